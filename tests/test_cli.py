"""The command line, run as a user would."""

import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "sk_maskid", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_landscape_prints_a_row_per_task():
    out = _run("landscape", "--n-tokens", "20000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # header line, column titles, rule, then 7 tasks x 2 token types
    assert len(lines) == 3 + 14
    assert sum("categorical" in line for line in lines) == 7
    assert "not identifiable (Theorem 2)" in out.stdout
    assert out.stderr.count("[landscape]") == 14  # one progress line per row


def test_landscape_plot_writes_a_png(tmp_path):
    path = tmp_path / "landscape.png"
    out = _run(
        "landscape", "--no-fit", "--emissions", "categorical", "--plot", str(path)
    )
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
