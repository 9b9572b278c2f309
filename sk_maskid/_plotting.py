"""Figures for the command line (matplotlib is the optional 'plot' extra)."""

from .identifiability import _recovery, check_task

_CURVES = {
    "categorical": (
        ("1->2", "1->3", "1,3->2", "1->2*3", "2->1*3"),
        (1e4, 3e4, 1e5, 3e5, 1e6),
    ),
    "gaussian": (("1->2", "1->2*3", "2->1*3"), (1e4, 3e4, 1e5)),
}


def plot_recovery_curves(path, *, n_components, n_features, random_state=0):
    """Recovery error versus tokens per task; identifiable tasks solid.

    Parameters
    ----------
    path : str
        PNG file to write.
    n_components : int
    n_features : dict
        ``{"categorical": n_symbols, "gaussian": token_dim}``.
    random_state : int, default=0
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError(
            "--plot needs matplotlib: pip install 'sk_maskid[plot]'"
        ) from exc
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, (emission, (tasks, sizes)) in zip(axes, _CURVES.items(), strict=True):
        d = n_features[emission]
        for task in tasks:
            verdict = check_task(
                task,
                emission=emission,
                n_components=n_components,
                n_features=d,
                random_state=random_state,
            ).verdict
            errors = [
                max(_recovery(task, emission, n_components, d, n, random_state))
                for n in sizes
            ]
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
