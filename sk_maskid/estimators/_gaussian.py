"""Masked-prediction estimator for HMMs with Gaussian tokens."""

from __future__ import annotations

from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._matching import _HESSIAN_PAIRS, posterior_quadratic
from .._statistics import (
    TokenPairs,
    framed_gaussian_moments,
    observed_tokens,
    reframe_gaussian_moments,
    sub_window_offsets,
    token_frame,
)
from .._validation import check_token_array
from ..extraction import extract_gaussian, tensor_route
from ..models import GaussianHMMModel
from ._base import _BaseMaskedHMM

__all__ = ["MaskedGaussianHMM"]


# Highest feature power: moments of z^9 and above of standardised data span
# more than the rank threshold's 1e10 and their sums are dominated by a few
# tokens (measured: the Jacobian of degree 19 loses 367 of 420 directions).
MAX_FEATURE_DEGREE = 8


def _two_sided(task):
    """Positions of a task with two observed tokens and one target token.

    Its optimal predictor ``f = E[x_b | x_a, x_c]`` gives the third moment
    of the three positions, ``E[x~_a ⊗ f ⊗ x~_c] = E[x~_a ⊗ x~_b ⊗ x~_c]``
    (in the tasks' position order), so the moments form reads the HMM out
    of it as it does for ``"1->2*3"``.
    """
    if (
        len(task.observed) == 2
        and len(task.targets) == 1
        and len(task.targets[0]) == 1
        and len(task.positions) == 3
    ):
        return task.positions
    return None


class MaskedGaussianHMM(_BaseMaskedHMM):
    """Masked-prediction estimator for HMMs with Gaussian tokens.

    Two predictors, chosen by ``predictor``:

    * ``"moments"`` (tensor tasks such as ``"1->2*3"``): the predictor of the
      tensor product is summarised by the cross-moment tensor
      ``E[x~_{s1} ⊗ x~_{s2} ⊗ x~_{s3}]`` of token features
      ``x~ = [x, x^2, ..., x^p, 1]`` (powers per coordinate, ``p =
      feature_degree``), whose CP decomposition gives each state's feature
      means, hence means, variances and transitions. With ``p = 1``
      (``x~ = [x; 1]``) it tells apart at most ``d + 1`` states, whose
      variances come from ``E[x~_{s1} ⊗ x_{s2}^2]``; degree ``p`` tells apart
      ``d p + 1`` (the feature means of distinct Gaussians are generically
      linearly independent). Tasks with two observed tokens and one target
      (``"1,3->2"``) use the same tensor, which their predictor determines
      (``E[x~_a ⊗ f(x_a, x_c) ⊗ x~_c]``), with ``p = 1``.
    * ``"posterior"`` (one token from another, e.g. ``"1->2"``, ``"2->1"``,
      ``"1->3"``): the paper's tied parametric form
      ``E[x_b | x_a] = M T^g softmax(M^T x_a / s2 + b)``, fitted by L-BFGS
      from ``n_init`` k-means++ starts on a sample of at most 1e5 token
      pairs, then by Newton steps (one pass over all pairs each), with the
      variance pinned by the second moment (the predictor alone leaves a
      one-parameter family). ``partial_fit`` adds each further chunk as a
      quadratic model of its loss at the current predictor (value,
      gradient, Hessian: sums over pairs) and reads out the minimiser of
      the summed models: one Newton step on the union, close to but not
      equal to a ``fit`` on all chunks (see the user guide).

    Parameters
    ----------
    n_components : int, default=2
        Number of hidden states.
    task : str or MaskedTask, default="1->2*3"
        Masked-prediction task.
    predictor : {"auto", "moments", "posterior"}, default="auto"
        Predictor form; "auto" picks "moments" for tensor tasks and tasks
        with two observed tokens and one target, "posterior" for
        single-token tasks.
    covariance_type : {"spherical", "diag"}, default="diag"
        Form of ``covars_`` (hmmlearn's setter shapes). The posterior form
        estimates one shared variance.
    min_covar : float, default=1e-3
        Floor on the variances.
    feature_degree : int or "auto", default="auto"
        Highest power ``p`` of the token features of the moments form (see
        above); ``"auto"`` takes the smallest that tells ``n_components``
        states apart, ``max(1, ceil((k - 1) / d))``, at most 8 (so scalar
        tokens support up to 9 states). Higher powers need more data (their
        moments are noisier), so more is not better.
    n_init : int, default=5
        Starts of the decomposition or of L-BFGS; the best is kept.
    max_iter : int, default=500
        Iterations per start.
    tol : float, default=1e-10
        Stopping tolerance per start.
    refine : {"em"} or None, default=None
        ``"em"``: after extraction, run Baum-Welch on the training sequences
        from the extracted parameters, accelerated by SQUAREM with a
        likelihood safeguard, to convergence (in :meth:`fit` only;
        ``partial_fit`` keeps the statistics-only extraction so chunked fits
        equal ``fit``). The training log-likelihood never decreases.
        ``None`` refines only when the quality check fails (an extracted HMM
        scoring below the i.i.d. model, or degenerate), and says so.
    refine_iter : int, default=1000
        Maximum E-steps (forward-backward passes) of the refinement; a
        :class:`~sklearn.exceptions.ConvergenceWarning` says when it is hit.
    refine_tol : float, default=1e-7
        The refinement has converged when an accepted step gains less than
        this in training log-likelihood per observed token.
    refine_starts : int or "auto", default="auto"
        EM starts of the refinement: the extracted HMM and ``refine_starts - 1``
        others (means seeded by k-means++ on the training tokens, the data's
        variance, alternately the extracted and uniform transitions). Every
        start runs 20 E-steps, the more likely half twice as many more, and so
        on (successive halving) until one is left, which continues to
        convergence (EM climbs to the optimum of its start's basin).
        ``"auto"``: 16 starts below 1e3 observed training tokens, 8 below 1e4,
        4 below 1e5, 1 above. The tensor read-out is consistent, so on
        much data it starts in the best basin; on little data it is noisy,
        likelihoods have many basins, and extra starts cost little.
    check_identifiability : bool, default=True
        Whether each fit asks :func:`sk_maskid.identifiability.fit_verdict`
        if the task identifies the model (free for the paper's tasks, one
        bounded Jacobian otherwise); False skips it (``identifiable_`` None).
    chunk_size : int, default=100_000
        Windows per chunk when accumulating the statistics: bounds memory.
    n_jobs : int, default=None
        Parallel jobs over chunks (joblib; ``None`` means 1 unless in a
        :func:`joblib.parallel_backend` context). Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds starts and slice combinations.
    verbose : int, default=0
        Verbosity: ``>= 1`` prints each stage (statistics, extraction, EM
        iterations with the per-token gain) on stderr.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    means_ : ndarray of shape (n_components, n_token_features)
    covars_ : ndarray
        ``(n_components,)`` (spherical) or ``(n_components,
        n_token_features)`` (diag).
    model_ : GaussianHMMModel
    statistics_ : dict
        Additive sums (cross-moments and counts) for the moment route; for
        the posterior form, the number of pairs, ``sum ||x||^2``, the
        fitted predictor's parameters ``theta`` and the loss's summed
        quadratic model (``hessian``, ``target``) at it; the token pairs
        themselves are not kept.
    task_ : MaskedTask
    n_token_features_ : int
        Token dimension.
    identifiable_, identifiability_reason_, extraction_fit_error_, \
extraction_condition_, extraction_warnings_, extraction_n_iter_, n_iter_, \
converged_, refine_history_, train_score_, iid_score_ :
        As in :class:`MaskedCategoricalHMM`; the posterior form reports its
        final squared loss as ``extraction_fit_error_``. The quality check
        also reports states whose variance sits at the ``min_covar`` floor
        while the data vary far more, or exceeds 1e4 times the data's.
    extraction_method_ : {"cp", "posterior", "degenerate"}
        "degenerate" when the data support fewer than ``n_components``
        distinct states (e.g. constant tokens): every state then emits the
        token mean and variance, and an ExtractionWarning says so.
    n_features_in_ : int
        Window length seen during fit.

    See Also
    --------
    MaskedCategoricalHMM : The same for categorical tokens.
    """

    _parameter_constraints: dict = {
        **_BaseMaskedHMM._parameter_constraints,
        "predictor": [StrOptions({"auto", "moments", "posterior"})],
        "covariance_type": [StrOptions({"spherical", "diag"})],
        "min_covar": [Interval(Real, 0, None, closed="neither")],
        "feature_degree": [
            Interval(Integral, 1, MAX_FEATURE_DEGREE, closed="both"),
            StrOptions({"auto"}),
        ],
    }
    _emission = "gaussian"
    _state_names = ("n_token_features_", "predictor_form_", "feature_degree_")
    _size_name = "n_token_features_"

    def __init__(
        self,
        n_components=2,
        *,
        task="1->2*3",
        predictor="auto",
        covariance_type="diag",
        min_covar=1e-3,
        feature_degree="auto",
        n_init=5,
        max_iter=500,
        tol=1e-10,
        refine=None,
        refine_iter=1000,
        refine_tol=1e-7,
        refine_starts="auto",
        check_identifiability=True,
        chunk_size=100_000,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_components,
            task=task,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            refine=refine,
            refine_iter=refine_iter,
            refine_tol=refine_tol,
            refine_starts=refine_starts,
            check_identifiability=check_identifiability,
            chunk_size=chunk_size,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
        )
        self.predictor = predictor
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.feature_degree = feature_degree

    def _resolve_predictor(self, task):
        route = tensor_route(task) or _two_sided(task)
        form = self.predictor
        if form == "auto":
            form = "moments" if route is not None else "posterior"
        single = (
            len(task.observed) == 1
            and len(task.targets) == 1
            and len(task.targets[0]) == 1
        )
        if form == "moments" and route is None:
            raise ValueError(
                f"predictor='moments' needs three positions: a tensor task with one "
                "observed token and a two-token product target (e.g. '1->2*3') or "
                "two observed tokens and one target (e.g. '1,3->2'), got "
                f"{task.spec!r}"
            )
        if form == "posterior" and not single:
            raise ValueError(
                f"predictor='posterior' needs a one-token task such as '1->2', "
                f"got {task.spec!r}; Gaussian tokens support one-token tasks and "
                "tensor tasks with one observed token"
            )
        return form

    def _check_windows(self, X, reset, task, min_windows=1):
        X = check_token_array(
            self,
            X,
            categorical=False,
            reset=reset,
            min_rows=min_windows,
            n_features=None if reset else self.n_token_features_,
        )
        if reset:
            form = self._resolve_predictor(task)
            d, k = X.shape[2], self.n_components
            two_sided = _two_sided(task) is not None
            degree = self.feature_degree
            if two_sided:
                degree = 1  # its predictor is linear in the predicted token
            elif degree == "auto":
                degree = min(max(1, -(-(k - 1) // d)), MAX_FEATURE_DEGREE)
            if form == "moments" and two_sided and k > d + 1:
                raise ValueError(
                    f"n_components={k} is too large for task {task.spec!r} on "
                    f"{d}-dimensional tokens: its predictor is linear in the "
                    "predicted token, so its moments hold the features [x; 1] of "
                    f"that token, which tell apart at most {d + 1} states; a "
                    "tensor task such as '1->2*3' supports more through "
                    "feature_degree"
                )
            if form == "posterior" and k > d + 1:
                raise ValueError(
                    f"n_components={k} is too large for the posterior form on "
                    f"{d}-dimensional tokens: its shared-variance softmax "
                    f"separates at most {d + 1} states with affinely independent "
                    "means; a tensor task such as '1->2*3' (the moments form) "
                    "supports more through feature_degree"
                )
            if form == "moments" and k > d * degree + 1:
                raise ValueError(
                    f"n_components={k} is too large for feature_degree={degree} "
                    f"on {d}-dimensional tokens: the features [x, ..., x^{degree}, "
                    f"1] tell apart at most {d * degree + 1} states; raise "
                    f"feature_degree (at most {MAX_FEATURE_DEGREE}: higher powers' "
                    "moments are numerically meaningless) or leave it 'auto'"
                )
            return X, {
                "n_token_features_": d,
                "predictor_form_": form,
                "feature_degree_": degree if form == "moments" else None,
            }
        return X, {name: getattr(self, name) for name in self._state_names}

    def _statistics(self, X, task, state):
        if state["predictor_form_"] == "moments":
            return self._sum_over_chunks(
                framed_gaussian_moments, X, task.positions, state["feature_degree_"]
            )
        # The posterior form is fitted on data, not on sums: the token pairs
        # (earlier, later), produced chunk by chunk from the windows, and the
        # sums that pin the variance. A backward task ("2->1") sees the same
        # pairs: its HMM is fitted through the forward form E[later | earlier].
        offset, scale = token_frame(X)  # the data's own frame: any units fit alike
        a, b = task.observed[0], task.targets[0][0]
        pairs = TokenPairs(
            X,
            offset,
            scale,
            min(a, b) - 1,
            abs(b - a),
            sub_window_offsets(X.shape[1], max(a, b)),
        )
        return {
            "n": float(pairs.count),
            "sq": pairs.sum_sq,
            "n_tokens": float(pairs.n_tokens),
            "pairs": pairs,
            "offset": offset,
            "scale": scale,
        }

    def _start_statistics(self, X, state):
        return observed_tokens(X[:, :1])

    def _merge(self, old, new):
        if "pairs" in new:
            new = self._posterior_chunk(old, new)
        if "m3" in old and "m3" in new:
            # moments of two chunks add up once in one frame: the first one's
            new = {**new, **reframe_gaussian_moments(new, old["offset"], old["scale"])}
        merged = super()._merge(old, new)
        merged["offset"], merged["scale"] = old["offset"], old["scale"]
        return merged

    def _posterior_chunk(self, old, new):
        """A new chunk's pairs as a quadratic model of the loss at the
        current predictor, in the first chunk's frame.

        The pairs themselves are not kept (they are the data): the chunk
        enters through the loss's value, gradient and Hessian at
        ``old["theta"]``, which add up over chunks (see
        :func:`~sk_maskid._matching.posterior_quadratic`).
        """
        held = new["pairs"]
        pairs = TokenPairs(
            held.X, old["offset"], old["scale"], held.first, held.gap, held.n_offsets
        )
        m2 = (old["sq"] + pairs.sum_sq) / (old["n_tokens"] + pairs.n_tokens)
        sample = pairs.sample(_HESSIAN_PAIRS, check_random_state(self.random_state))
        quadratic = posterior_quadratic(
            old["theta"],
            pairs,
            sample,
            held.gap,
            self.n_components,
            m2,
            self.min_covar / float(old["scale"]) ** 2,
        )
        return {
            "n": float(pairs.count),
            "sq": pairs.sum_sq,
            "n_tokens": float(pairs.n_tokens),
            **quadratic,
            **{key: new[key] for key in new.keys() & {"first"}},
        }

    def _combine(self, key, old, new):
        if key == "first":  # the first tokens themselves: stacked
            return np.concatenate([old, new])
        return super()._combine(key, old, new)

    def _other_starts(self, model, X, n_starts, random_state):
        # k-means++ seeds spread the means over the data as hmmlearn's
        # k-means initialisation does, without its Lloyd iterations (EM
        # runs next); the transitions alternate between the read-out's and
        # hmmlearn's uniform ones (each reaches basins the other misses on
        # short real series).
        tokens = observed_tokens(X)
        variances = np.maximum(tokens.var(axis=0), self.min_covar)
        if self.covariance_type == "spherical":
            variances = variances.mean()
        k = self.n_components
        starts = []
        uniform = np.full(k, 1.0 / k)
        for i in range(n_starts):
            means, _ = kmeans_plusplus(
                tokens, k, random_state=random_state.randint(np.iinfo(np.int32).max)
            )
            covars = np.tile(variances, (k, 1) if np.ndim(variances) else k)
            read_out = i % 2 == 0
            starts.append(
                GaussianHMMModel(
                    model.startprob_ if read_out else uniform,
                    model.transmat_ if read_out else np.tile(uniform, (k, 1)),
                    means,
                    covars,
                    self.covariance_type,
                )
            )
        return starts

    def _iid_score(self, X):
        """Log-likelihood per token of one diagonal Gaussian (1 state)."""
        spread = observed_tokens(X).var(axis=0)
        var = np.maximum(spread, self.min_covar)
        return float(-0.5 * np.sum(np.log(2 * np.pi * var) + spread / var))

    def _degenerate_parameters(self, model, X):
        spread = observed_tokens(X).var(axis=0)
        variances = np.diagonal(model._full_covars(), axis1=1, axis2=2)
        problems = []
        # a state squeezed onto the floor while the data vary far more
        floored = np.any(
            (variances <= self.min_covar * (1 + 1e-9))
            & (spread > 100 * self.min_covar),
            axis=1,
        )
        if floored.any():
            problems.append(
                f"has state(s) {np.flatnonzero(floored).tolist()} with a variance "
                f"at the min_covar floor ({self.min_covar:g})"
            )
        huge = np.any(variances > 1e4 * np.maximum(spread, self.min_covar), axis=1)
        if huge.any():
            problems.append(
                f"has state(s) {np.flatnonzero(huge).tolist()} with variances over "
                "1e4 times the data's"
            )
        return problems

    def _n_emission_parameters(self):
        k, d = self.n_components, self.n_token_features_
        return k * d + (k if self.covariance_type == "spherical" else k * d)

    def _persistent_statistics(self, stats):
        # the posterior form's token pairs are the data: not kept
        return {k: v for k, v in stats.items() if k != "pairs"}

    def _verdict_options(self, state):
        degree = state["feature_degree_"]
        return {"feature_degree": degree} if degree and degree > 1 else {}

    def _refine_options(self):
        return {**super()._refine_options(), "min_covar": self.min_covar}

    def _extract(self, stats, task, state):
        offset, scale = stats["offset"], float(stats["scale"])
        if not np.isfinite(np.float64(scale) ** 2):
            raise ValueError(
                f"the tokens vary on a scale of {scale:.3g}, whose variances "
                "overflow double precision: rescale the data"
            )
        if state["predictor_form_"] == "moments" and stats["n"] > 0:
            # extract in the data's own frame (mean 0, variance 1 from the
            # sums), whatever the frame the sums were taken in: scaling or
            # shifting the data scales or shifts the fit exactly
            d = stats["m_sq"].shape[1]
            mean = stats["m3"][-1, :d, -1] / stats["n"]
            spread = np.mean(stats["m_sq"][-1] / stats["n"] - mean**2)
            offset = offset + scale * mean
            scale = scale * np.sqrt(spread) if spread > 0 else scale
            stats = reframe_gaussian_moments(stats, offset, scale)
        result = extract_gaussian(
            stats,
            task,
            self.n_components,
            form=state["predictor_form_"],
            covariance_type=self.covariance_type,
            min_covar=self.min_covar / scale**2,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        z = result.model
        model = GaussianHMMModel(
            z.startprob_,
            z.transmat_,
            z.means_ * scale + offset,
            z.covars_ * scale**2,
            z.covariance_type,
        )
        return replace(result, model=model)

    def predict(self, X, lengths=None):
        """The fitted predictor's output for the task's target.

        The Gaussian predictor is the extracted HMM's exact conditional
        expectation (the parametric form both predictors take).

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences in any input form of :meth:`fit`; only the task's
            observed positions (counted from each sequence's start) are read,
            masked ones marginalised.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        ndarray of shape (n_sequences, target_dim)
        """
        X, _ = self._check_sequences(X, lengths)
        return self.model_.conditional_expectation(self.task_, self._task_rows(X))

    def to_hmmlearn(self):
        """An hmmlearn ``GaussianHMM`` holding the extracted parameters.

        Returns
        -------
        hmmlearn.hmm.GaussianHMM
            With ``init_params=""`` so a later ``fit`` refines these values.
        """
        check_is_fitted(self, "statistics_")
        from hmmlearn.hmm import GaussianHMM

        hmm = GaussianHMM(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            init_params="",
            # the log implementation never underflows on long sequences
            implementation="log",
            random_state=self.random_state,
        )
        hmm.n_features = self.n_token_features_
        hmm.startprob_ = self.startprob_
        hmm.transmat_ = self.transmat_
        hmm.means_ = self.means_
        hmm.covars_ = self.covars_
        return hmm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a token NaN in every feature is masked
        return tags
