"""Masked-prediction estimators that read the HMM back out of the predictor.

``MaskedCategoricalHMM`` and ``MaskedGaussianHMM`` learn the optimal
predictor of one masked-prediction task from windows of a sequence, then
extract ``startprob_``, ``transmat_`` and ``emissionprob_`` / ``means_`` +
``covars_`` (hmmlearn's names and orientation) from it. The shared machinery
is in ``_base``; each token type has its own module.
"""

from ._base import expected_failed_checks
from ._categorical import MaskedCategoricalHMM
from ._gaussian import MaskedGaussianHMM

__all__ = ["MaskedCategoricalHMM", "MaskedGaussianHMM", "expected_failed_checks"]
