"""What the benchmark scripts share: the benchmark models and table header."""

from sk_maskid import make_categorical_hmm, make_gaussian_hmm


def benchmark_model(emission, seed):
    """The benchmark HMMs of the docs: categorical k=4, d=12; Gaussian k=3, d=6."""
    if emission == "categorical":
        return make_categorical_hmm(4, 12, random_state=seed)
    return make_gaussian_hmm(3, 6, random_state=seed)


def print_header(*columns):
    """Print the concatenated column titles and a rule under them."""
    header = "".join(columns)
    print(header)
    print("-" * len(header), flush=True)
