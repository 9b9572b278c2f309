"""Command line: ``python -m sk_maskid landscape`` and ``demo``."""

import argparse
import sys

import numpy as np

from .datasets import make_categorical_hmm
from .landscape import format_landscape, landscape, plot_recovery_curves
from .tasks import parse_task

# The message of datasets' rejection sampler when no draw meets its
# conditioning thresholds (it happens for k >= 7 hidden states).
_SAMPLER_FAILURE = "no well-conditioned model found"


def _int_at_least(minimum):
    """argparse ``type=``: an int >= ``minimum``."""

    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return convert


_positive = _int_at_least(1)
_seed = _int_at_least(0)


def _task(text):
    """argparse ``type=``: one spelling, or a joint task ``"a + b + ..."``.

    A lone ``+`` (the printed joint spelling pasted unquoted into a shell)
    is returned as is; :func:`_join_tasks` glues its neighbours.
    """
    if text.strip() == "+":
        return "+"
    parts = text.split("+")
    if any(not part.strip() for part in parts):
        raise argparse.ArgumentTypeError(
            f"malformed task {text!r}: '+' must join two task spellings, "
            "e.g. '1->2 + 2->1'"
        )
    try:
        specs = tuple(parse_task(part).spec for part in parts)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith("malformed"):
            message = f"malformed {message}"
        raise argparse.ArgumentTypeError(message) from None
    return specs if len(specs) > 1 else specs[0]


def _join_tasks(parser, values):
    """Tasks for :func:`landscape`; ``a + b`` as separate words is joint."""

    def joint(task):
        return task if isinstance(task, tuple) else (task,)

    def dangling():
        parser.error(
            "argument --tasks: malformed task: '+' must join two task "
            "spellings, e.g. --tasks '1->2 + 2->1'"
        )

    tasks = []
    glue = False
    for value in values:
        if value == "+":
            if not tasks or glue:
                dangling()
            glue = True
        elif glue:
            tasks[-1] = joint(tasks[-1]) + joint(value)
            glue = False
        else:
            tasks.append(value)
    if glue:
        dangling()
    return tasks


def _sampler_failed(parser, exc, k):
    """argparse-style error for the rejection sampler giving up, else re-raise."""
    if _SAMPLER_FAILURE not in str(exc):
        raise exc
    parser.error(
        f"argument --n-components: no well-conditioned random HMM with {k} "
        f"hidden states could be drawn ({exc}); use fewer hidden states, "
        "more symbols/dimensions or another --random-state"
    )


def _demo(parser, args):
    if args.n_components > args.n_symbols:
        parser.error(
            f"argument --n-components: must be <= --n-symbols "
            f"({args.n_components} > {args.n_symbols}): the demo samples a "
            "non-degenerate model, whose emission matrix has full column rank"
        )
    try:
        model = make_categorical_hmm(
            args.n_components, args.n_symbols, random_state=args.random_state
        )
    except RuntimeError as exc:
        _sampler_failed(parser, exc, args.n_components)
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


def _landscape(parser, args):

    def progress(message):
        print(f"[landscape] {message}", file=sys.stderr, flush=True)

    n_features = {"categorical": args.n_symbols, "gaussian": args.n_features}
    names = {"categorical": "--n-symbols", "gaussian": "--n-features"}
    if args.plot:
        try:  # fail before the fits, not after
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("argument --plot: needs matplotlib: pip install -e '.[plot]'")
        # the curves are recovery errors of models sampled for each token type
        for emission in args.emissions:
            d = n_features[emission]
            if args.n_components > d:
                parser.error(
                    f"argument --plot: --n-components must be <= {names[emission]} "
                    f"({args.n_components} > {d}): no model with more hidden "
                    "states than that can be sampled for a recovery curve; "
                    "drop --plot for the verdicts"
                )
    tasks = None if args.tasks is None else _join_tasks(parser, args.tasks)
    try:
        rows = landscape(
            tasks=tasks,
            emissions=args.emissions,
            n_components=args.n_components,
            n_features=n_features,
            n_tokens=args.n_tokens,
            fit=not args.no_fit,
            random_state=args.random_state,
            progress=progress,
        )
    except RuntimeError as exc:
        _sampler_failed(parser, exc, args.n_components)
    print(
        f"Identifiability landscape: k={args.n_components} hidden states, "
        f"{args.n_symbols} symbols / {args.n_features}-dimensional Gaussian tokens"
        + (
            "; verdicts only (--no-fit)"
            if args.no_fit
            else f"; recovery errors (max-abs, states aligned) at {args.n_tokens} "
            "tokens from a random model with persistent states (self_transition=0.5)"
        )
    )
    print(format_landscape(rows))
    if not args.no_fit:
        for emission in args.emissions:
            if args.n_components > n_features[emission]:
                progress(
                    f"{emission}: recovery errors n/a: no model with "
                    f"k={args.n_components} > {names[emission]}="
                    f"{n_features[emission]} can be sampled (its emission "
                    "matrix would not have full column rank)"
                )
    if args.plot:
        progress(f"plotting recovery curves to {args.plot}")
        plot_recovery_curves(
            args.plot,
            n_components=args.n_components,
            n_features=n_features,
            emissions=args.emissions,
            random_state=args.random_state,
            progress=progress,
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
    demo.add_argument("--n-components", type=_positive, default=3, help="hidden states")
    demo.add_argument(
        "--n-symbols",
        type=_positive,
        default=6,
        help="alphabet size (at least --n-components)",
    )
    demo.add_argument("--n-sequences", type=_positive, default=100, help="sequences")
    demo.add_argument(
        "--length", type=_positive, default=50, help="tokens per sequence"
    )
    demo.add_argument("--random-state", type=_seed, default=0, help="seed")
    demo.set_defaults(func=_demo, parser=demo)
    land = sub.add_parser(
        "landscape",
        help="which masking schemes identify the HMM: theory, numeric check, "
        "and recovery error of the fitted estimators",
        description="Print, for each task and token type, the paper's verdict, "
        "the numerical verdict (Jacobian rank, Kruskal) and the recovery error "
        "of the package's estimator on sampled data.",
    )
    land.add_argument(
        "--n-components", type=_positive, default=3, help="hidden states k"
    )
    land.add_argument(
        "--n-symbols",
        type=_int_at_least(2),
        default=6,
        help="alphabet size (categorical); with fewer symbols than hidden "
        "states the verdicts are reported and the recovery errors are n/a",
    )
    land.add_argument(
        "--n-features",
        type=_positive,
        default=4,
        help="token dimension (Gaussian); as --n-symbols for the recovery errors",
    )
    land.add_argument(
        "--n-tokens", type=_positive, default=100_000, help="tokens sampled per fit"
    )
    land.add_argument(
        "--tasks",
        nargs="+",
        type=_task,
        default=None,
        help="task spellings such as 1->2, 1,3->2 or 1->2*3; '+' joins "
        "spellings into one joint task, as the table prints it, e.g. "
        "'1->2 + 2->1' (default: the paper's tasks, the BERT-style middle "
        "and the joint pairwise task on three tokens)",
    )
    land.add_argument(
        "--emissions",
        nargs="+",
        choices=["categorical", "gaussian"],
        default=["categorical", "gaussian"],
        help="token types",
    )
    land.add_argument("--random-state", type=_seed, default=0, help="seed")
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
    land.set_defaults(func=_landscape, parser=land)
    args = parser.parse_args(argv)
    return args.func(args.parser, args)


if __name__ == "__main__":
    sys.exit(main())
