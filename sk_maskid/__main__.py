"""Command line: ``python -m sk_maskid demo``."""

import argparse
import sys

import numpy as np


def _demo(args):
    from .datasets import make_categorical_hmm

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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
