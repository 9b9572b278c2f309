"""The documentation builds with warnings as errors and runs every example.

CI has no internet, so intersphinx is switched off (SK_MASKID_DOCS_OFFLINE);
sphinx-gallery executes each ``examples/plot_*.py`` once during the build.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("sphinx_gallery")
pytest.importorskip("numpydoc")

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_with_warnings_as_errors(tmp_path):
    env = {**os.environ, "SK_MASKID_DOCS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(ROOT / "docs"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    examples = sorted(p.stem for p in (ROOT / "examples").glob("plot_*.py"))
    assert len(examples) >= 5
    for name in examples:
        # every example ran and produced at least one figure
        assert (tmp_path / "_images" / f"sphx_glr_{name}_001.png").exists(), name
    for page in (
        "landscape",
        "user_guide",
        "comparison",
        "api",
        "getting_started",
        "theory",
    ):
        assert (tmp_path / f"{page}.html").exists()
