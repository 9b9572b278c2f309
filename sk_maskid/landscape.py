"""The identifiability landscape: theory, numeric verdict and recovery, side by side.

The experiment harness behind ``python -m sk_maskid landscape``: for each
masking scheme and token type it puts the paper's verdict, the numerical
verdict of :func:`~sk_maskid.identifiability.check_task` and the recovery
error of the package's estimator on sampled data in one row, and draws
recovery error against the number of tokens. It sits above the estimators
(it fits them); the theory it reports lives in
:mod:`sk_maskid.identifiability`.
"""

from __future__ import annotations

import warnings

import numpy as np

from .datasets import make_categorical_hmm, make_gaussian_hmm
from .estimators import MaskedCategoricalHMM, MaskedGaussianHMM
from .exceptions import NonIdentifiabilityWarning
from .identifiability import check_task
from .metrics import recovery_error
from .tasks import parse_task

__all__ = ["DEFAULT_TASKS", "format_landscape", "landscape", "plot_recovery_curves"]

DEFAULT_TASKS = (
    "1->2",
    "2->1",
    "1->3",
    "1,3->2",
    "1->2*3",
    "2->1*3",
    ("1->2", "2->1", "1->3", "3->1", "2->3", "3->2"),
)


_LANDSCAPE_SELF_TRANSITION = 0.5


def _recovery(task, emission, k, d, n_tokens, random_state):
    """Max-abs recovery errors of the package's estimator on sampled data.

    Returns ``(emission_error, transmat_error, route, notes)``: errors NaN
    and route "n/a" where no estimator fits the task (joint tasks; Gaussian
    tasks outside the supported forms) and where no model can be sampled
    (``k > d``: the datasets' models have an emission or mean matrix of full
    column rank). The route is the extraction method the fit used, the
    notes the fit's warnings (other than non-identifiability).
    """
    if isinstance(task, list | tuple) or k > d:
        return np.nan, np.nan, "n/a", ()
    task = parse_task(task)
    window = max(task.span, 3) + 2
    # Persistent states (self_transition=0.5), as in most applications, keep
    # the demonstration about identifiability rather than about conditioning.
    if emission == "categorical":
        model = make_categorical_hmm(
            k, d, self_transition=_LANDSCAPE_SELF_TRANSITION, random_state=random_state
        )
        est = MaskedCategoricalHMM(
            k,
            task=task.spec,
            n_features=d,
            n_init=2,
            max_iter=200,
            random_state=random_state,
        )
    else:
        try:  # the estimator says which tasks it fits
            MaskedGaussianHMM(task=task.spec)._resolve_predictor(task)
        except ValueError:
            return np.nan, np.nan, "n/a", ()
        model = make_gaussian_hmm(
            k, d, self_transition=_LANDSCAPE_SELF_TRANSITION, random_state=random_state
        )
        est = MaskedGaussianHMM(
            k, task=task.spec, n_init=2, max_iter=200, random_state=random_state
        )
    X = model.sample(
        max(int(n_tokens) // window, 10), window, random_state=random_state
    )
    # the verdict column already says what NonIdentifiabilityWarning would;
    # other warnings become the row's notes, printed under the table
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", NonIdentifiabilityWarning)
        est.fit(X)
    notes = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    errors = recovery_error(model, est)
    route = est.extraction_method_
    if getattr(est, "feature_degree_", None):
        route += f" (degree {est.feature_degree_})"
    return errors["emission"], errors["transmat"], route, notes


def landscape(
    tasks=None,
    emissions=("categorical", "gaussian"),
    n_components=3,
    n_features=None,
    *,
    n_tokens=100_000,
    fit=True,
    random_state=0,
    progress=None,
):
    """The identifiability landscape: one row per task and token type.

    Parameters
    ----------
    tasks : sequence, default=None
        Task spellings; a tuple inside is a joint task. ``None`` uses the
        paper's tasks plus the BERT-style middle ``"1,3->2"``.
    emissions : sequence of {"categorical", "gaussian"}
    n_components : int, default=3
    n_features : dict or int, default=None
        Alphabet size / token dimension; ``None`` means 6 symbols and 4
        dimensions.
    n_tokens : int, default=100_000
        Tokens sampled for the empirical recovery error, from random models
        with persistent states (``self_transition=0.5``).
    fit : bool, default=True
        Whether to fit the estimators (False leaves the errors NaN).
    random_state : int, default=0
    progress : callable, optional
        Called with a short message before each row (the CLI prints to
        stderr).

    Returns
    -------
    list of dict
        Keys: ``task``, ``emission``, ``theory``, ``verdict``,
        ``null_dimension``, ``kruskal``, ``route`` (the fit's extraction
        method), ``error_emission``, ``error_transmat``, ``n_tokens``,
        ``notes`` (the fit's warnings other than non-identifiability).
    """
    tasks = DEFAULT_TASKS if tasks is None else tasks
    if n_features is None:
        n_features = {"categorical": 6, "gaussian": 4}
    elif not isinstance(n_features, dict):
        n_features = {e: int(n_features) for e in emissions}
    rows = []
    total = len(emissions) * len(tasks)
    for emission in emissions:
        d = n_features[emission]
        for task in tasks:
            name = " + ".join(task) if isinstance(task, list | tuple) else task
            if progress is not None:
                progress(f"[{len(rows) + 1}/{total}] {emission:<11} {name}")
            report = check_task(
                list(task) if isinstance(task, tuple) else task,
                emission=emission,
                n_components=n_components,
                n_features=d,
                random_state=random_state,
            )
            err_e, err_t, route, notes = (
                _recovery(task, emission, n_components, d, n_tokens, random_state)
                if fit
                else (np.nan, np.nan, "-", ())
            )
            rows.append(
                {
                    "task": report.task,
                    "emission": emission,
                    "theory": report.theory or "-",
                    "verdict": report.verdict,
                    "null_dimension": report.null_dimension,
                    "kruskal": (
                        "-"
                        if report.kruskal is None
                        else ("holds" if report.kruskal.holds else "fails")
                    ),
                    "route": route,
                    "error_emission": float(err_e),
                    "error_transmat": float(err_t),
                    "n_tokens": int(n_tokens),
                    "notes": list(notes),
                }
            )
    return rows


def format_landscape(rows):
    """Aligned text table of :func:`landscape` rows."""
    columns = [
        ("task", "task"),
        ("emission", "token type"),
        ("theory", "theory (paper)"),
        ("verdict", "numeric verdict"),
        ("null_dimension", "null dim"),
        ("kruskal", "Kruskal"),
        ("route", "route"),
        ("error_emission", "err emission"),
        ("error_transmat", "err transmat"),
    ]

    def cell(row, key):
        value = row[key]
        if isinstance(value, float):
            return "n/a" if np.isnan(value) else f"{value:.3f}"
        return str(value)

    table = [[title for _, title in columns]] + [
        [cell(row, key) for key, _ in columns] for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"  {row['task']} ({row['emission']}): {note}"
        for row in rows
        for note in row.get("notes", ())
    ]
    if notes:
        notes.insert(0, "Warnings raised by the recovery fits:")
    return "\n".join(lines + ["", *_LEGEND] + notes)


_LEGEND = (
    "null dim: dimension of the family of HMMs sharing the task's optimal "
    "predictor (0: locally identifiable).",
    "Kruskal: Kruskal's uniqueness condition on the predictor tensor's CP "
    "factors (tensor targets only).",
    "route: how the estimator read the HMM out (cp: tensor decomposition; "
    "predictor matching: fitting the HMM's exact predictor; posterior: "
    "Gaussian posterior form; "
    "degree p: Gaussian token features [x, ..., x^p, 1]).",
    "-: not covered by the paper, not applicable, or not fitted. n/a: no "
    "estimator fits the task (joint tasks) or no model can be sampled.",
)


_CURVES = {
    "categorical": (
        ("1->2", "1->3", "1,3->2", "1->2*3", "2->1*3"),
        (1e4, 3e4, 1e5, 3e5, 1e6),
    ),
    # to 1e7 tokens: the posterior form's ("1->2") error falls slowly (its
    # loss is flat along a trade-off between means and transitions)
    "gaussian": (("1->2", "1->2*3", "2->1*3"), (1e4, 1e5, 1e6, 1e7)),
}


def plot_recovery_curves(
    path,
    *,
    n_components,
    n_features,
    emissions=("categorical", "gaussian"),
    random_state=0,
    progress=None,
):
    """Recovery error versus tokens per task; identifiable tasks solid.

    Categorical tasks from 1e4 to 1e6 tokens, Gaussian ones from 1e4 to 1e7
    (about 45 s on 2 cores, most of it sampling and fitting at 1e7).

    Parameters
    ----------
    path : str
        PNG file to write.
    n_components : int
    n_features : dict
        ``{"categorical": n_symbols, "gaussian": token_dim}``.
    emissions : sequence of {"categorical", "gaussian"}, default=both
        Token types to plot, one panel each.
    random_state : int, default=0
    progress : callable, optional
        Called with a short message before each fit (the CLI prints to
        stderr).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError(
            "--plot needs matplotlib: pip install 'sk_maskid[plot]'"
        ) from exc
    fig, axes = plt.subplots(
        1,
        len(emissions),
        figsize=(5.5 * len(emissions), 4.2),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, emission in zip(axes[0], emissions, strict=True):
        tasks, sizes = _CURVES[emission]
        d = n_features[emission]
        for task in tasks:
            verdict = check_task(
                task,
                emission=emission,
                n_components=n_components,
                n_features=d,
                random_state=random_state,
            ).verdict
            errors = []
            for n in sizes:
                if progress is not None:
                    progress(f"curve: {emission} {task} at {n:.0e} tokens")
                errors.append(
                    max(_recovery(task, emission, n_components, d, n, random_state)[:2])
                )
            ax.loglog(
                sizes,
                errors,
                "-o" if verdict == "identifiable" else "--x",
                label=f"{task} ({verdict})",
            )
        ax.set_title(f"{emission} tokens, k={n_components}, d={d}")
        ax.set_xlabel("training tokens")
        ax.set_ylabel("max-abs recovery error (emission, transmat)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Identifiable tasks (solid) converge; non-identifiable ones (dashed) stall"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
