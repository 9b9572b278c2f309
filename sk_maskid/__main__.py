"""Command line: ``python -m sk_maskid landscape`` and ``demo``."""

import argparse
import sys

import numpy as np

from .datasets import make_categorical_hmm
from .landscape import format_landscape, landscape, plot_recovery_curves


def _demo(args):
    model = make_categorical_hmm(
        args.n_components, args.n_symbols, random_state=args.random_state
    )
    X = model.sample(args.n_sequences, args.length, random_state=args.random_state)
    with np.printoptions(precision=3, suppress=True):
        print(f"{model!r}")
        print("startprob_:", model.startprob_)
        print("transmat_:\n", model.transmat_)
        print("emissionprob_:\n", model.emissionprob_)
    print(
        f"sampled {X.shape[0]} sequences of length {X.shape[1]}; "
        f"log-likelihood {model.log_likelihood(X).sum():.2f}, "
        f"{model.score(X):.4f} per token"
    )
    return 0


def _landscape(args):

    def progress(message):
        print(f"[landscape] {message}", file=sys.stderr, flush=True)

    if args.plot:
        try:  # fail before the fits, not after
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "error: --plot needs matplotlib: pip install -e '.[plot]'",
                file=sys.stderr,
            )
            return 2

    n_features = {"categorical": args.n_symbols, "gaussian": args.n_features}
    rows = landscape(
        tasks=args.tasks,
        emissions=args.emissions,
        n_components=args.n_components,
        n_features=n_features,
        n_tokens=args.n_tokens,
        fit=not args.no_fit,
        random_state=args.random_state,
        progress=progress,
    )
    print(
        f"Identifiability landscape: k={args.n_components} hidden states, "
        f"{args.n_symbols} symbols / {args.n_features}-dimensional Gaussian tokens; "
        f"recovery errors (max-abs, states aligned) at {args.n_tokens} tokens "
        "from a random model with persistent states (self_transition=0.5)"
    )
    print(format_landscape(rows))
    if args.plot:
        progress(f"plotting recovery curves to {args.plot}")
        plot_recovery_curves(
            args.plot,
            n_components=args.n_components,
            n_features=n_features,
            random_state=args.random_state,
        )
        print(f"wrote {args.plot}")
    return 0


def main(argv=None):
    """Entry point of ``python -m sk_maskid``."""
    parser = argparse.ArgumentParser(
        prog="python -m sk_maskid",
        description="Masked prediction that identifies hidden Markov models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="sample a random categorical HMM and print its likelihood"
    )
    demo.add_argument("--n-components", type=int, default=3, help="hidden states")
    demo.add_argument("--n-symbols", type=int, default=6, help="alphabet size")
    demo.add_argument("--n-sequences", type=int, default=100, help="sequences")
    demo.add_argument("--length", type=int, default=50, help="tokens per sequence")
    demo.add_argument("--random-state", type=int, default=0, help="seed")
    demo.set_defaults(func=_demo)
    land = sub.add_parser(
        "landscape",
        help="which masking schemes identify the HMM: theory, numeric check, "
        "and recovery error of the fitted estimators",
        description="Print, for each task and token type, the paper's verdict, "
        "the numerical verdict (Jacobian rank, Kruskal) and the recovery error "
        "of the package's estimator on sampled data.",
    )
    land.add_argument("--n-components", type=int, default=3, help="hidden states k")
    land.add_argument(
        "--n-symbols", type=int, default=6, help="alphabet size (categorical)"
    )
    land.add_argument(
        "--n-features", type=int, default=4, help="token dimension (Gaussian)"
    )
    land.add_argument(
        "--n-tokens", type=int, default=100_000, help="tokens sampled per fit"
    )
    land.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="task spellings (default: the paper's tasks, the BERT-style middle "
        "and the joint pairwise task on three tokens)",
    )
    land.add_argument(
        "--emissions",
        nargs="+",
        choices=["categorical", "gaussian"],
        default=["categorical", "gaussian"],
        help="token types",
    )
    land.add_argument("--random-state", type=int, default=0, help="seed")
    land.add_argument(
        "--no-fit", action="store_true", help="skip the recovery fits (faster)"
    )
    land.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also write recovery error versus tokens for each task "
        "(needs matplotlib, the 'plot' extra)",
    )
    land.set_defaults(func=_landscape)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
