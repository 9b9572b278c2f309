"""Warning classes, so users can filter them precisely."""

__all__ = ["ExtractionWarning", "NonIdentifiabilityWarning"]


class NonIdentifiabilityWarning(UserWarning):
    """The task's optimal predictor does not determine the HMM.

    The extracted parameters are *a* valid HMM consistent with the fitted
    predictor, one of a continuum (or a finite set) of equally good ones.
    """


class ExtractionWarning(UserWarning):
    """The tensor decomposition or the read-out looks unreliable.

    Raised for a large reconstruction error, near-collinear factors, or
    statistics too thin to support the requested number of states.
    """
