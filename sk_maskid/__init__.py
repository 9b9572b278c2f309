"""sk_maskid: masked prediction that identifies hidden Markov models.

Fit a masked-prediction estimator on sequence windows, read the HMM back out
of the fitted predictor by tensor decomposition, and ask whether a masking
scheme identifies the model at all.
"""

from .datasets import (
    load_nile,
    load_stdlib_text,
    load_sunspots,
    load_us_macro,
    make_categorical_hmm,
    make_gaussian_hmm,
)
from .estimators import MaskedCategoricalHMM, MaskedGaussianHMM
from .exceptions import ExtractionWarning, NonIdentifiabilityWarning
from .models import CategoricalHMMModel, GaussianHMMModel
from .sequences import make_windows, pad_sequences, split_lengths, unpad
from .tasks import MaskedTask, parse_task

__version__ = "0.1.0"

__all__ = [
    "CategoricalHMMModel",
    "ExtractionWarning",
    "MaskedCategoricalHMM",
    "MaskedGaussianHMM",
    "NonIdentifiabilityWarning",
    "GaussianHMMModel",
    "MaskedTask",
    "load_nile",
    "load_stdlib_text",
    "load_sunspots",
    "load_us_macro",
    "make_categorical_hmm",
    "make_gaussian_hmm",
    "make_windows",
    "pad_sequences",
    "parse_task",
    "split_lengths",
    "unpad",
]
