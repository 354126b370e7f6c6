"""Selected elements of C^-1 from a scikit-sparse CHOLMOD factor: the reference implementation.

The REML engine no longer uses this module: it computes the selected inverse in place over its
own supernodal factor (mvreml.chol, mvreml._core.supinv), without the simplicial copy of L and
the second array made here. This CSC version stays as the independent reference the supernodal
kernel is checked against (tests/test_selinv.py) and for callers holding a scikit-sparse factor.

The score needs C^-1 only on the pattern of C (docs/THEORY.md, "Score" and
"Selected inverse"). `SelectedInverse` locates the wanted (row, col) pairs in the pattern of the
permuted factor once, then runs the compiled Takahashi recursion (``mvreml._core.selinv``) over
the whole pattern of L and reads the pairs out.

Facts about scikit-sparse 0.4.16 this module relies on (checked in tests/test_selinv.py):

- ``factor.L()`` returns the LL' factor as CSC (lower, sorted, diagonal first) with
  L L' = C[P][:, P], P = ``factor.P()``. A supernodal factor stays supernodal (L() works
  on a copy); a simplicial LDL' factor is converted *in place* to LL', which later
  ``cholesky_inplace`` calls accept.
- The supernodal pattern is fixed by the symbolic analysis (relaxed supernodes keep
  their explicit zeros, whatever the values). The simplicial pattern is the structure of
  the input: it shrinks if C is passed with explicit zeros removed. The pattern is
  therefore compared at every call and positions are recomputed when it changed.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mvreml._core import selinv as _k
from mvreml.errors import FactorizationError

__all__ = ["SelectedInverse"]

_MAX_LISTED = 5


def _index_arrays(L: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """indptr and indices of L with one common integer type (the kernels are fused on it)."""
    indptr, indices = L.indptr, L.indices
    if indptr.dtype != indices.dtype or indptr.dtype not in (np.int32, np.int64):
        indptr = indptr.astype(np.int64)
        indices = indices.astype(np.int64)
    return np.ascontiguousarray(indptr), np.ascontiguousarray(indices)


def _factor_L(factor) -> sp.csc_matrix:
    """The LL' factor of a numeric CHOLMOD factor, as sorted CSC."""
    try:
        L = factor.L()
    except Exception as exc:  # CholmodError on a factor that was only analysed
        raise FactorizationError(
            f"cannot read the Cholesky factor (was the matrix factorized?): {exc}") from exc
    L = sp.csc_matrix(L) if not sp.isspmatrix_csc(L) else L
    if not L.has_sorted_indices:
        L.sort_indices()
    return L


class SelectedInverse:
    """Selected elements of C^-1 for a fixed symbolic pattern, reused across iterates.

    Parameters
    ----------
    factor : sksparse.cholmod.Factor
        A numeric factorization of C (supernodal or simplicial).
    rows, cols : array_like of int
        The (row, col) pairs of C, original ordering, whose inverse entries are wanted.
        Either triangle may be given (C^-1 is symmetric).

    Raises
    ------
    FactorizationError
        If a pair lies outside the pattern of the factor (its inverse entry is not
        produced by the selected inversion).

    Notes
    -----
    ``values(factor)`` and ``diagonal(factor)`` each run the selected inversion on the
    current numeric factor; to read both from one inversion call ``compute(factor)``
    once, then ``values()`` and ``diagonal()`` without argument.
    """

    def __init__(self, factor, rows, cols):
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError(f"rows and cols must be 1-D of one length, got shapes "
                             f"{rows.shape} and {cols.shape}")
        if rows.size and not (np.issubdtype(rows.dtype, np.integer)
                              and np.issubdtype(cols.dtype, np.integer)):
            raise ValueError("rows and cols must be integer arrays")
        self._rows = rows.astype(np.int64)
        self._cols = cols.astype(np.int64)
        self._indptr = None
        self._indices = None
        self._perm = None
        self._zx = None
        self._load_pattern(_factor_L(factor), np.asarray(factor.P()))

    # ------------------------------------------------------------------ pattern
    def _load_pattern(self, L: sp.csc_matrix, perm: np.ndarray) -> None:
        """Cache the pattern of L, its supernodes and the positions of the wanted pairs."""
        n = L.shape[0]
        indptr, indices = _index_arrays(L)
        counts = np.diff(indptr)
        if np.any(counts < 1) or not np.array_equal(indices[indptr[:-1]], np.arange(n)):
            raise FactorizationError("the factor's columns do not start with their diagonal; "
                                     "not a CHOLMOD factor from Factor.L()")
        if self._rows.size and (min(self._rows.min(), self._cols.min()) < 0
                                or max(self._rows.max(), self._cols.max()) >= n):
            bad = np.flatnonzero((self._rows < 0) | (self._rows >= n)
                                 | (self._cols < 0) | (self._cols >= n))
            raise ValueError(f"pairs out of range for a {n} x {n} matrix: "
                             f"{self._describe(bad)}")
        super_ptr = np.empty(n + 1, dtype=np.int64)
        nsuper = _k.supernode_partition(indptr, indices, super_ptr)

        perm = np.array(perm, dtype=np.int64)
        pinv = np.empty(n, dtype=np.int64)
        pinv[perm] = np.arange(n, dtype=np.int64)
        pos = np.empty(self._rows.size, dtype=np.int64)
        _k.pair_positions(indptr, indices, pinv[self._rows], pinv[self._cols], pos)
        absent = np.flatnonzero(pos < 0)
        if absent.size:
            raise FactorizationError(
                f"{absent.size} requested pair(s) of C lie outside the pattern of its "
                f"Cholesky factor, so the selected inverse does not contain them: "
                f"{self._describe(absent)}")
        self._indptr, self._indices = indptr, indices
        self._super_ptr = super_ptr[:nsuper + 1].copy()
        self._perm, self._pinv, self._pos = perm, pinv, pos
        self._diag_pos = indptr[:-1].astype(np.int64)[pinv]

    def _describe(self, which: np.ndarray) -> str:
        listed = ", ".join(f"({self._rows[q]}, {self._cols[q]})" for q in which[:_MAX_LISTED])
        more = f" and {which.size - _MAX_LISTED} more" if which.size > _MAX_LISTED else ""
        return listed + more

    def _same_pattern(self, L: sp.csc_matrix, perm: np.ndarray) -> bool:
        return (L.indptr.shape == self._indptr.shape
                and L.indices.shape == self._indices.shape
                and np.array_equal(L.indptr, self._indptr)
                and np.array_equal(L.indices, self._indices)
                and np.array_equal(perm, self._perm))

    # ------------------------------------------------------------------ numbers
    @property
    def n(self) -> int:
        """Order of C."""
        return self._indptr.shape[0] - 1

    @property
    def nnz(self) -> int:
        """Number of entries of the factor's pattern (= entries of C^-1 computed)."""
        return int(self._indices.shape[0])

    @property
    def n_supernodes(self) -> int:
        """Number of supernodes the kernel walks (n means the scalar recursion)."""
        return self._super_ptr.shape[0] - 1

    def compute(self, factor) -> "SelectedInverse":
        """Run the selected inversion on the current numeric factor; returns self.

        Parameters
        ----------
        factor : sksparse.cholmod.Factor
            The factor passed to the constructor, refactorized (``cholesky_inplace``).
        """
        L = _factor_L(factor)
        perm = np.asarray(factor.P())
        if not self._same_pattern(L, perm):
            self._load_pattern(L, perm)
        lx = np.ascontiguousarray(L.data, dtype=np.float64)
        zx = np.empty_like(lx)
        info = np.zeros(2, dtype=np.int64)
        _k.selinv_supernodal(self._indptr, self._indices, lx, self._super_ptr, zx, info)
        code, col = int(info[0]), int(info[1])
        if code == 1:
            raise FactorizationError(
                f"the factor's pattern is not closed under elimination at permuted column "
                f"{col} (column {self._perm[col]} of C); not a Cholesky pattern")
        if code == 2:
            raise FactorizationError(
                f"zero or non-finite pivot in the factor at permuted column {col} "
                f"(column {self._perm[col]} of C); C is not positive definite")
        if code == 3:
            raise MemoryError("no memory for the selected-inverse workspace")
        self._zx = zx
        return self

    def _require(self, factor) -> np.ndarray:
        if factor is not None:
            self.compute(factor)
        if self._zx is None:
            raise FactorizationError("no selected inverse computed yet: pass the factor")
        return self._zx

    def values(self, factor=None) -> np.ndarray:
        """C^-1[rows, cols] for the current numeric factor.

        Parameters
        ----------
        factor : sksparse.cholmod.Factor, optional
            If given, the selected inversion is run on it first; if omitted, the result
            of the last ``compute`` is read.

        Returns
        -------
        numpy.ndarray
            One value per requested pair, in the order given to the constructor.
        """
        return self._require(factor)[self._pos]

    def diagonal(self, factor=None) -> np.ndarray:
        """diag(C^-1) in the original ordering (``factor`` as in `values`)."""
        return self._require(factor)[self._diag_pos]

    def pattern_inverse(self, factor=None) -> sp.csc_matrix:
        """Lower triangle of C^-1 on the factor's pattern, permuted: rows/cols follow P.

        Entry (i, j) is C^-1[P[i], P[j]]; mainly for checks and for callers that need
        more than the pairs given to the constructor.
        """
        zx = self._require(factor)
        return sp.csc_matrix((zx, self._indices, self._indptr), shape=(self.n, self.n))
