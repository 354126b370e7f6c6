"""Column rank of the fixed-effect design: which columns to keep (lme4-style dropping).

Columns are kept in model order; a column that is (numerically) a combination of earlier
ones is dropped, as R's lm / lme4 do, so reported effects keep their usual meaning.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .errors import DataError

_TOL = 1e-9


def independent_columns(X: sp.spmatrix, tol: float = _TOL) -> tuple[list, list]:
    """Split the columns of X into a full-rank set (kept, in order) and the aliased rest.

    Parameters
    ----------
    X : scipy.sparse matrix (N x p)
    tol : float
        Relative tolerance on the residual norm of a column after projection on the
        columns kept before it.

    Returns
    -------
    keep, dropped : list of int
    """
    X = sp.csc_matrix(X)
    p = X.shape[1]
    if p == 0:
        return [], []
    if not np.isfinite(X.data).all():   # build_design names the column first; this is a backstop
        coo = sp.coo_matrix(X)
        bad = sorted({int(j) for j in coo.col[~np.isfinite(coo.data)]})
        raise DataError(f"the fixed-effect design has non-finite values in columns {bad}")
    # scale each column by its largest entry before squaring: the sum of squares of a
    # column of 1e155 overflows to inf, which made such a column look aliased
    big = abs(X).max(axis=0).toarray().ravel()
    nonzero = np.flatnonzero(big > 0)
    zero = [int(i) for i in np.flatnonzero(big == 0)]
    if nonzero.size == 0:
        return [], zero            # every column is zero: all aliased
    Xs = X[:, nonzero] @ sp.diags(1.0 / big[nonzero])
    norms = np.sqrt(np.asarray(Xs.multiply(Xs).sum(axis=0)).ravel())
    Xn = Xs @ sp.diags(1.0 / norms)
    xtx = sp.csc_matrix(Xn.T @ Xn)
    # fast path: a sparse Cholesky (fill-reducing order) with healthy pivots means full column
    # rank; X'X of contemporary groups is an arrow, so this costs nothing where a dense
    # factorization of p ~ 5000 columns costs seconds and p^2 memory
    if _full_rank(xtx, tol):
        return [int(i) for i in nonzero], zero
    keep_local = _sequential(xtx.toarray(), tol)
    keep = [int(nonzero[i]) for i in keep_local]
    dropped = sorted(set(range(p)) - set(keep))
    return keep, dropped


def _full_rank(xtx: sp.csc_matrix, tol: float) -> bool:
    """True when the (unit-diagonal) X'X is positive definite with no pivot below 100 tol."""
    from .cholmod import CholmodError, cholesky

    try:
        d = cholesky(xtx, mode="simplicial").D()
    except CholmodError:          # not positive definite: some column is aliased
        return False
    return bool(np.all(np.isfinite(d)) and np.min(d) > tol * 100)


def _sequential(xtx: np.ndarray, tol: float) -> list:
    """Left-to-right Cholesky of X'X that skips columns whose pivot is ~0 (aliased with earlier ones)."""
    k = xtx.shape[0]
    keep: list = []
    L = np.zeros((k, k))
    m = 0
    for j in range(k):
        v = sla.solve_triangular(L[:m, :m], xtx[keep, j], lower=True) if m else np.zeros(0)
        d = xtx[j, j] - v @ v
        if d > tol * xtx[j, j]:
            L[m, :m] = v
            L[m, m] = np.sqrt(d)
            keep.append(j)
            m += 1
    return keep
