"""CHOLMOD through scikit-sparse, whichever of its two APIs is installed.

Debian 12 (SuiteSparse 5) builds only scikit-sparse 0.4.x, whose ``Factor`` is made by
``analyze`` and refactorized by ``cholesky_inplace``; Debian 13 (SuiteSparse 7) takes
0.5, whose ``CholeskyFactor`` is made by its constructor and refactorized by
``factorize``. Its users (relmat.py: sparse K^-1 and log|K|; rank.py: simplicial LDL' pivots;
the reference selected inverse in selinv.py) speak the 0.4 dialect; with 0.5 installed this
module adapts it. The REML iteration does not use it: it binds CHOLMOD itself (mvreml.chol),
to reach the supernodal factor that scikit-sparse does not expose.

The adapter keeps what the engine relies on: the factor's pattern is the symbolic one
(explicit zeros kept, so the Takahashi recursion sees the whole filled pattern), ``L()``
is the LL' factor of C[P][:, P] with ``P()`` the permutation, and ``logdet()`` is log|C|.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sksparse import cholmod as _sk

CholmodError = _sk.CholmodError
CholmodNotPositiveDefiniteError = _sk.CholmodNotPositiveDefiniteError

#: 4 for scikit-sparse 0.4.x (``analyze`` / ``Factor``), 5 for 0.5 (``CholeskyFactor``).
API = 5 if hasattr(_sk, "CholeskyFactor") else 4

__all__ = ["API", "analyze", "cholesky", "CholmodError", "CholmodNotPositiveDefiniteError"]


class _Factor05:
    """The 0.4 ``Factor`` interface on a scikit-sparse 0.5 ``CholeskyFactor`` (LL' form)."""

    def __init__(self, A, mode: str = "auto", ordering_method: str = "default"):
        self._f = _sk.CholeskyFactor(sp.csc_array(A), order=ordering_method, supernodal_mode=mode)

    def cholesky_inplace(self, A, beta: float = 0.0) -> None:
        self._f.factorize(sp.csc_array(A), ldl=False, beta=float(beta))

    def __call__(self, b):
        with warnings.catch_warnings():
            # near-singular warnings: the engine judges feasibility itself
            warnings.simplefilter("ignore", getattr(_sk, "CholmodWarning", Warning))
            x = self._f.solve(sp.csc_array(b) if sp.issparse(b) else np.asarray(b, dtype=float))
        return sp.csc_matrix(x) if sp.issparse(x) else x

    solve_A = __call__

    def _view(self) -> sp.csc_matrix:
        # the factor's own pattern (``get_factor`` would drop numerical zeros)
        return sp.csc_matrix(self._f.factor)

    def L(self) -> sp.csc_matrix:
        return self._view().copy()

    def P(self) -> np.ndarray:
        return np.asarray(self._f.perm).copy()

    def D(self) -> np.ndarray:
        return self._view().diagonal() ** 2

    def logdet(self) -> float:
        return float(2.0 * np.log(self._view().diagonal()).sum())

    def inv(self) -> sp.csc_matrix:
        n = self._f.N
        return self(sp.identity(n, format="csc"))


def analyze(A, mode: str = "auto", ordering_method: str = "default"):
    """Symbolic analysis of the lower triangle of A (a factor to refactorize in place)."""
    if API == 4:
        return _sk.analyze(sp.csc_matrix(A), mode=mode, ordering_method=ordering_method)
    return _Factor05(A, mode=mode, ordering_method=ordering_method)


def cholesky(A, beta: float = 0.0, mode: str = "auto", ordering_method: str = "default"):
    """Symbolic analysis and numeric factorization of A + beta I in one call."""
    if API == 4:
        return _sk.cholesky(sp.csc_matrix(A), beta=beta, mode=mode, ordering_method=ordering_method)
    f = _Factor05(A, mode=mode, ordering_method=ordering_method)
    f.cholesky_inplace(A, beta=beta)
    return f


def failed_column(err) -> int | None:
    """The original-order column at which a factorization failed, when scikit-sparse says."""
    factor = getattr(err, "factor", None)
    column = getattr(err, "column", None)
    if factor is None or column is None:
        return None
    try:
        return int(np.asarray(factor.P())[column])   # CHOLMOD reports a permuted column
    except (AttributeError, IndexError, TypeError):
        return None
