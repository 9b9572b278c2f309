"""The landscape harness: rows agree with check_task, recovery follows the verdict."""

import numpy as np
import pytest

from sk_maskid.identifiability import check_task
from sk_maskid.landscape import format_landscape, landscape


@pytest.fixture(scope="module")
def rows():
    return landscape(
        tasks=["1->2", "1->2*3"],
        emissions=("categorical",),
        n_tokens=20_000,
        random_state=0,
    )


def test_rows_agree_with_check_task(rows):
    assert [(r["task"], r["emission"]) for r in rows] == [
        ("1->2", "categorical"),
        ("1->2*3", "categorical"),
    ]
    for row in rows:
        # the landscape's defaults: 3 states, 6 symbols
        report = check_task(
            row["task"],
            emission="categorical",
            n_components=3,
            n_features=6,
            random_state=0,
        )
        assert row["verdict"] == report.verdict
        assert row["null_dimension"] == report.null_dimension
        assert row["theory"] == (report.theory or "-")
        assert row["kruskal"] == (
            "-"
            if report.kruskal is None
            else ("holds" if report.kruskal.holds else "fails")
        )
        assert row["n_tokens"] == 20_000
    assert [r["verdict"] for r in rows] == ["not identifiable", "identifiable"]
    # "1->2" leaves a k(k-1) = 6 dimensional continuum of equivalent models
    assert rows[0]["null_dimension"] == 6 and rows[1]["null_dimension"] == 0


def test_identifiable_task_recovers_better(rows):
    pair, tensor = (max(r["error_emission"], r["error_transmat"]) for r in rows)
    assert np.isfinite(pair) and np.isfinite(tensor)
    assert tensor < pair


def test_joint_and_unfitted_rows_have_no_errors():
    joint = ("1->2", "2->1")
    rows = landscape(
        tasks=[joint], emissions=("categorical",), fit=False, random_state=0
    )
    assert rows[0]["task"] == "1->2 + 2->1"
    assert np.isnan(rows[0]["error_emission"]) and np.isnan(rows[0]["error_transmat"])


def test_format_landscape_lines_and_missing_errors():
    def row(task, err):
        return {
            "task": task,
            "emission": "categorical",
            "theory": "-",
            "verdict": "identifiable",
            "null_dimension": 0,
            "kruskal": "holds",
            "route": "cp",
            "error_emission": err,
            "error_transmat": err,
            "n_tokens": 10,
        }

    rows = [row("1->2*3", 0.01234), row("a much longer task name", np.nan)]
    lines = format_landscape(rows).splitlines()
    legend = lines[2 + len(rows) :]
    lines = lines[: 2 + len(rows)]  # header, rule, one line per row
    assert legend[0] == "" and len(legend) == 5
    assert [line.split(":")[0] for line in legend[1:4]] == [
        "null dim",
        "Kruskal",
        "route",
    ]
    assert lines[0].split()[:3] == ["task", "token", "type"] and "route" in lines[0]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[-2:] == ["0.012", "0.012"]  # three decimals
    assert lines[3].split()[-2:] == ["n/a", "n/a"]
    # columns are aligned: every cell starts where its header starts
    starts = [
        i
        for i, ch in enumerate(lines[1])
        if ch == "-" and (i == 0 or lines[1][i - 1] == " ")
    ]
    for line in lines[2:]:
        assert all(line[s - 1] == " " for s in starts[1:])
    assert lines[3].startswith("a much longer task name")
    # header and rule only, then the legend
    assert format_landscape([]).splitlines()[2:] == legend


def test_fit_warnings_are_listed_under_the_table_not_raised():
    rows = landscape(
        tasks=["1->2*3"], emissions=("categorical",), n_tokens=2000, random_state=0
    )
    assert isinstance(rows[0]["notes"], list)
    rows[0]["notes"] = ["ExtractionWarning: something to say"]
    text = format_landscape(rows)
    assert text.splitlines()[-2:] == [
        "Warnings raised by the recovery fits:",
        "  1->2*3 (categorical): ExtractionWarning: something to say",
    ]
    rows[0]["notes"] = []
    assert "Warnings raised" not in format_landscape(rows)
