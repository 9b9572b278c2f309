"""Sphinx configuration for sk_maskid."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import sk_maskid

project = "sk_maskid"
author = "sk_maskid developers"
release = sk_maskid.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
# Cross-links to scikit-learn, numpy, tensorly and hmmlearn need their
# inventories from the web; CI has no internet, so it sets
# SK_MASKID_DOCS_OFFLINE=1 and the links render as plain text.
if not os.environ.get("SK_MASKID_DOCS_OFFLINE"):
    extensions.append("sphinx.ext.intersphinx")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "tensorly": ("https://tensorly.org/stable/", None),
    "hmmlearn": ("https://hmmlearn.readthedocs.io/en/stable/", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", None),
}

autosummary_generate = True
# Document what sk_maskid defines (including its private base classes), not
# scikit-learn's own mixin methods, whose docstrings link into sklearn's docs.
autodoc_default_options = {
    "members": True,
    "inherited-members": "BaseEstimator,TransformerMixin,_SetOutputMixin,"
    "_MetadataRequester,object",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
}

templates_path = []
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
html_theme = "alabaster"
html_static_path = []
nitpicky = False


# --------------------------------------------------------------------------
# Generated tables: docs/landscape.rst includes what these commands print,
# run afresh at every build (the first line of each file is the command).
# The recovery fits at 1e4 tokens take about 10 s on 2 cores; the verdicts
# alone take well under a second.
# --------------------------------------------------------------------------
_DOCS = Path(__file__).resolve().parent
GENERATED_COMMANDS = {
    "landscape.txt": ["landscape", "--n-tokens", "10000"],
    "landscape_k_gt_d.txt": [
        "landscape",
        "--no-fit",
        "--n-components",
        "5",
        "--n-symbols",
        "4",
        "--emissions",
        "categorical",
        "--tasks",
        "1->2*3",
    ],
}


def _generate_tables(app):
    out_dir = _DOCS / "generated"
    out_dir.mkdir(exist_ok=True)
    for name, args in GENERATED_COMMANDS.items():
        run = subprocess.run(
            [sys.executable, "-m", "sk_maskid", *args],
            cwd=_DOCS.parent,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(
                f"python -m sk_maskid {shlex.join(args)} failed:\n{run.stderr[-3000:]}"
            )
        command = shlex.join(["python", "-m", "sk_maskid", *args])
        (out_dir / name).write_text(f"$ {command}\n{run.stdout}")


def _skip_metadata_request_setters(app, what, name, obj, skip, options):
    # scikit-learn generates set_{method}_request for every method with an
    # argument beyond X and y (metadata routing); their docstrings link into
    # sklearn's glossary, and sklearn documents them.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("builder-inited", _generate_tables)
    app.connect("autodoc-skip-member", _skip_metadata_request_setters)
    return {"parallel_read_safe": True}
