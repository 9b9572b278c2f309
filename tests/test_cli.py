"""The command line, run as a user would."""

import re
import subprocess
import sys

import numpy as np
import pytest

from sk_maskid.__main__ import main
from sk_maskid.identifiability import check_task
from sk_maskid.landscape import DEFAULT_TASKS, format_landscape, landscape


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "sk_maskid", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _main(capsys, *args):
    """``main(args)`` in this process (quicker than a fresh interpreter)."""
    try:
        returncode = main(list(args))
    except SystemExit as exc:
        returncode = exc.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(
        args, returncode, stdout=captured.out, stderr=captured.err
    )


def _table(out):
    """The printed table: the stdout lines after the one-line header."""
    return out.stdout.splitlines()[1:]


def _body(out):
    """The table's rows: between the rule and the blank line of the legend."""
    table = _table(out)
    return table[2 : table.index("")]


def _cells(line):
    """Cells of a table line (columns are separated by two or more spaces)."""
    return re.split(r"\s{2,}", line.strip())


def _assert_usage_error(out, option, problem):
    """argparse's way: usage line, ``error: argument OPTION: ...``, status 2."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    assert "\nusage: python -m sk_maskid " in "\n" + out.stderr
    assert f"error: argument {option}: {problem}" in out.stderr, out.stderr
    assert out.stdout == ""


def test_landscape_prints_the_computed_rows():
    out = _run("landscape", "--no-fit")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(
        "Identifiability landscape: k=3 hidden states, 6 symbols / 4-dimensional"
    )
    rows = landscape(
        emissions=("categorical", "gaussian"),
        n_components=3,
        n_features={"categorical": 6, "gaussian": 4},
        fit=False,
        random_state=0,
    )
    assert _table(out) == format_landscape(rows).splitlines()
    # column titles, rule, then every default task for both token types
    assert len(_body(out)) == 2 * len(DEFAULT_TASKS) == len(rows)
    assert out.stderr.count("[landscape]") == len(rows)  # one progress line a row
    total = len(rows)
    assert f"[landscape] [1/{total}] categorical" in out.stderr
    assert f"[landscape] [{total}/{total}] gaussian" in out.stderr
    # the printed null dimensions are check_task's, not a table's
    for line, row in zip(_body(out), rows, strict=True):
        task, emission, _, verdict, null_dim, *_ = _cells(line)
        report = check_task(
            task,
            emission=emission,
            n_components=3,
            n_features=6 if emission == "categorical" else 4,
            random_state=0,
        )
        assert (task, emission) == (row["task"], row["emission"])
        assert verdict == report.verdict
        assert int(null_dim) == report.null_dimension


def test_landscape_with_fits_prints_the_computed_errors():
    args = ("--tasks", "1->2*3", "--emissions", "categorical", "--n-tokens", "5000")
    out = _run("landscape", *args, "--random-state", "1")
    assert out.returncode == 0, out.stderr
    rows = landscape(
        tasks=["1->2*3"],
        emissions=["categorical"],
        n_tokens=5000,
        random_state=1,
    )
    assert np.isfinite(rows[0]["error_emission"])
    assert _table(out) == format_landscape(rows).splitlines()


def test_printed_tasks_round_trip_as_tasks(capsys):
    land = ("landscape", "--no-fit", "--emissions", "categorical")
    first = _run(*land)
    assert first.returncode == 0, first.stderr
    printed = [_cells(line)[0] for line in _body(first)]
    joint = "1->2 + 2->1 + 1->3 + 3->1 + 2->3 + 3->2"
    assert joint in printed
    again = _main(capsys, *land, "--tasks", *printed)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    # pasted unquoted into a shell, the joint spelling arrives as separate words
    quoted = _main(capsys, *land, "--tasks", "1,3->2", joint)
    unquoted = _main(capsys, *land, "--tasks", "1,3->2", *joint.split())
    assert quoted.returncode == unquoted.returncode == 0, unquoted.stderr
    assert unquoted.stdout == quoted.stdout
    assert [_cells(line)[0] for line in _body(quoted)] == ["1,3->2", joint]


@pytest.mark.parametrize(
    "value, problem",
    [
        ("1-2", "malformed task '1-2': expected 'OBSERVED->TARGETS'"),
        ("0->1", "malformed task '0->1': positions are 1-based"),
        ("1->1", "malformed task '1->1': position(s) [1] are both observed"),
        ("1->2 + 2-1", "malformed task '2-1'"),
        ("1->2 +", "malformed task '1->2 +': '+' must join two task spellings"),
        ("+", "malformed task: '+' must join two task spellings"),
    ],
)
def test_malformed_task_is_a_usage_error(capsys, value, problem):
    out = _main(capsys, "landscape", "--no-fit", "--tasks", value)
    _assert_usage_error(out, "--tasks", problem)


@pytest.mark.parametrize(
    "command, option, value, problem",
    [
        ("landscape", "--n-components", "0", "must be >= 1, got 0"),
        ("landscape", "--n-symbols", "1", "must be >= 2, got 1"),
        ("landscape", "--n-features", "-3", "must be >= 1, got -3"),
        ("landscape", "--n-tokens", "0", "must be >= 1, got 0"),
        ("landscape", "--random-state", "-1", "must be >= 0, got -1"),
        ("landscape", "--n-components", "x", "expected an integer, got 'x'"),
        ("demo", "--n-components", "-1", "must be >= 1, got -1"),
        ("demo", "--n-symbols", "0", "must be >= 1, got 0"),
        ("demo", "--n-sequences", "0", "must be >= 1, got 0"),
        ("demo", "--length", "-5", "must be >= 1, got -5"),
    ],
)
def test_nonpositive_sizes_are_usage_errors(capsys, command, option, value, problem):
    out = _main(capsys, command, option, value)
    _assert_usage_error(out, option, problem)


def test_more_states_than_symbols_reports_verdicts_without_errors():
    # k > d: the verdicts are meaningful, no model can be sampled for a fit
    args = dict(n_components=4, n_features={"categorical": 3, "gaussian": 4})
    out = _run(
        "landscape",
        "--n-components", "4",
        "--n-symbols", "3",
        "--emissions", "categorical",
        "--tasks", "1->2*3",
        "--n-tokens", "2000",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = landscape(tasks=["1->2*3"], emissions=["categorical"], n_tokens=2000, **args)
    assert _table(out) == format_landscape(rows).splitlines()
    assert rows[0]["verdict"] == "not identifiable"
    assert _cells(_table(out)[2])[-2:] == ["n/a", "n/a"]
    assert "recovery errors n/a: no model with k=4 > --n-symbols=3" in out.stderr


def test_configurations_that_cannot_run_are_usage_errors(capsys, tmp_path):
    out = _main(capsys, "demo", "--n-components", "7", "--n-symbols", "5")
    _assert_usage_error(out, "--n-components", "must be <= --n-symbols (7 > 5)")
    plot = tmp_path / "curves.png"
    out = _main(capsys, "landscape", "--n-components", "5", "--plot", str(plot))
    _assert_usage_error(out, "--plot", "--n-components must be <= --n-features")
    assert not plot.exists()


def test_seven_states_five_symbols_never_ends_in_a_traceback():
    # The command. The generic HMM behind the numerical check is drawn
    # by rejection, which can give up for k=7; then the CLI says so, as a
    # usage error naming --n-components, instead of a RuntimeError.
    out = _run(
        "landscape",
        "--n-components", "7",
        "--n-symbols", "5",
        "--emissions", "categorical",
        "--tasks", "1->2",
    )  # fmt: skip
    assert "Traceback" not in out.stderr
    if out.returncode == 0:
        row = _cells(_table(out)[2])
        assert row[:2] == ["1->2", "categorical"] and row[-2:] == ["n/a", "n/a"]
    else:
        _assert_usage_error(
            out,
            "--n-components",
            "no well-conditioned random HMM with 7 hidden states could be drawn",
        )


def test_landscape_plot_writes_a_png(tmp_path):
    path = tmp_path / "landscape.png"
    # The curves fit every task of the --emissions at up to 1e6 tokens
    # whatever --no-fit says; one hidden state keeps that to seconds.
    out = _run(
        "landscape",
        "--no-fit",
        "--emissions", "categorical",
        "--n-components", "1",
        "--plot", str(path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_help_documents_every_option():
    out = _run("landscape", "--help")
    assert out.returncode == 0
    for option in (
        "--n-components",
        "--n-symbols",
        "--n-features",
        "--n-tokens",
        "--tasks",
        "--emissions",
        "--random-state",
        "--no-fit",
        "--plot",
    ):
        assert option in out.stdout


def test_demo():
    out = _run("demo", "--n-sequences", "5", "--length", "10")
    assert out.returncode == 0 and "log-likelihood" in out.stdout
