"""CP decomposition of 3-way moment tensors: Jennrich start, tensorly ALS.

Written around :func:`tensorly.decomposition.parafac` (the library does the
ALS); only the simultaneous-diagonalisation start is ours, because tensorly
has no Jennrich initialisation and a random start often lands in an ALS
swamp on these tensors.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import tensorly as tl
from sklearn.utils import check_random_state
from tensorly.cp_tensor import CPTensor
from tensorly.decomposition import parafac

__all__ = ["CPResult", "cp_decompose"]

CPResult = namedtuple(
    "CPResult", ["weights", "factors", "fit_error", "condition", "n_iter"]
)
CPResult.__doc__ = """Result of :func:`cp_decompose`.

Attributes
----------
weights : ndarray of shape (rank,)
    Component weights.
factors : list of 3 ndarrays of shape (dim_m, rank)
    Factor matrices.
fit_error : float
    Relative reconstruction error ``||W - W_hat|| / ||W||``.
condition : float
    Smallest singular value over the three factors after scaling every
    column to unit norm (1 for orthogonal factors, 0 for collinear ones).
n_iter : int
    ALS iterations of the kept start (line-search steps included).
"""


# --------------------------------------------------------------------------
# CP decomposition: Jennrich start, tensorly ALS refinement.
# --------------------------------------------------------------------------
def _jennrich(tensor, rank, rng):
    """Closed-form CP factors by simultaneous diagonalisation.

    Two random combinations of the mode-3 slices, ``Wa = A diag(C^T a) B^T``
    and ``Wb``, are projected on the leading singular subspaces of modes 1
    and 2; the eigenvectors of ``Ma Mb^-1`` give ``A``. Then each row of
    ``A^+ W`` is a rank-1 matrix ``B[:, h] C[:, h]^T`` (one SVD each).
    """
    I, J, K = tensor.shape
    U = np.linalg.svd(tensor.reshape(I, J * K), full_matrices=False)[0][:, :rank]
    V = np.linalg.svd(np.moveaxis(tensor, 1, 0).reshape(J, I * K), full_matrices=False)[
        0
    ][:, :rank]
    a, b = rng.standard_normal((2, K))
    Ma = U.T @ (tensor @ a) @ V
    Mb = U.T @ (tensor @ b) @ V
    vals, vecs = np.linalg.eig(Ma @ np.linalg.pinv(Mb))
    # Noise can turn two real eigenvalues into a conjugate pair; their real
    # and imaginary parts span the same plane, and keep A full rank.
    basis = np.real(vecs)
    pair = np.flatnonzero(vals.imag > 1e-12 * np.abs(vals).max())
    basis[:, pair] = np.real(vecs[:, pair])
    conj = [np.flatnonzero(np.isclose(vals, np.conj(vals[i])))[0] for i in pair]
    basis[:, conj] = np.imag(vecs[:, pair])
    A = U @ basis
    Z = np.einsum("hi,ijk->hjk", np.linalg.pinv(A), tensor)
    B = np.empty((J, rank))
    C = np.empty((K, rank))
    for h in range(rank):  # a loop over components, not over data
        u, s, vt = np.linalg.svd(Z[h], full_matrices=False)
        B[:, h] = u[:, 0] * s[0]
        C[:, h] = vt[0]
    return [A, B, C]


class _ErrorLog(list):
    """parafac callback: one reconstruction error per call (start, then iterations)."""

    def __call__(self, cp_tensor, error):
        self.append(error)

    @property
    def n_iter(self):
        return len(self) - 1


def _condition(factors):
    normalised = [f / np.linalg.norm(f, axis=0) for f in factors]
    return float(min(np.linalg.svd(f, compute_uv=False)[-1] for f in normalised))


def cp_decompose(
    tensor,
    rank,
    *,
    n_init=5,
    max_iter=500,
    tol=1e-12,
    good_enough=0.0,
    random_state=None,
):
    """Rank-``rank`` CP decomposition of a 3-way tensor, best of ``n_init``.

    Each start is a Jennrich step on random slice combinations (random
    factors when ``rank`` exceeds a mode's dimension), refined by
    :func:`tensorly.decomposition.parafac` (ALS with line search).

    Parameters
    ----------
    tensor : ndarray of shape (I, J, K)
    rank : int
    n_init : int, default=5
        Number of starts; the one with the smallest reconstruction error is
        kept.
    max_iter : int, default=500
        ALS iterations per start.
    tol : float, default=1e-12
        ALS stopping tolerance on the change of reconstruction error.
    good_enough : float, default=0.0
        Relative reconstruction error at or below which no further start is
        tried (e.g. the sampling noise of an empirical tensor: no start can
        fit the signal better than that).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    CPResult
    """
    rng = check_random_state(random_state)
    tensor = np.asarray(tensor, dtype=float)
    norm = np.linalg.norm(tensor)
    if norm == 0:
        raise ValueError("cannot decompose an all-zero tensor")
    best = None
    for _ in range(n_init):
        if rank <= min(tensor.shape[:2]):
            init = _jennrich(tensor, rank, rng)
        else:
            init = [rng.standard_normal((n, rank)) for n in tensor.shape]
        errors = _ErrorLog()
        try:
            cp = parafac(
                tl.tensor(tensor),
                rank,
                n_iter_max=max_iter,
                init=CPTensor((np.ones(rank), init)),
                # tensorly (0.10) with a callback and tol=0 reads an unset
                # error; the smallest positive tol runs every iteration too.
                tol=max(tol, np.finfo(float).tiny),
                # Line search extrapolates across ALS swamps: measured 184
                # iterations to tol=1e-10 instead of 500 without reaching it
                # (k=4, d=12, 1e6 tokens), at a lower residual.
                linesearch=True,
                random_state=rng,
                callback=errors,
            )
        except np.linalg.LinAlgError:
            continue  # a degenerate start (collinear factors); try another
        if not all(np.all(np.isfinite(f)) for f in cp[1]):
            continue
        weights, factors = cp
        error = np.linalg.norm(tl.cp_to_tensor(cp) - tensor) / norm
        if best is None or error < best[0]:
            best = (
                error,
                np.asarray(weights),
                [np.asarray(f) for f in factors],
                errors.n_iter,
            )
        if best[0] <= good_enough:
            break
    if best is None:
        raise ValueError(
            f"the rank-{rank} CP decomposition failed from all {n_init} starts "
            "(singular normal equations): the data do not support this many "
            "components"
        )
    error, weights, factors, n_iter = best
    return CPResult(weights, factors, float(error), _condition(factors), n_iter)
