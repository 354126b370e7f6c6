"""The engine's Cholesky factor: CHOLMOD supernodal LL', bound directly (mvreml._core.chol).

`SupernodalFactor` is the small interface the REML engine uses (likelihood.py): analyse the
pattern of C once, refactorize in place at every iterate, log|C|, solves with dense blocks of
right-hand sides, and `SupernodalInverse`, the selected inverse computed in place over the
factor's values (mvreml._core.supinv) and read at positions found once per pattern.

Why not scikit-sparse here: its factor hides CHOLMOD's supernode arrays, so the selected
inverse had to convert a copy of the factor to simplicial CSC and write a second array of the
same size at every iterate (what put the 1M-animal trait-3 problem out of memory). Here the
inverse overwrites the factor: an iterate holds C, one factor and the kernel's workspace. The
price is an order of steps: every solve that needs L (the BLUPs, the AI matrix) comes before
the selected inverse, after which the factor is *consumed* (``state == "consumed"``) until the
next `factorize`; a solve on it raises instead of returning numbers of the wrong matrix.
scikit-sparse stays where it serves (mvreml.cholmod: relmat's sparse K^-1 and rank's
simplicial LDL' pivots), outside the iteration.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._core import chol as _c
from ._core import fgram as _g
from ._core import supinv as _k
from .errors import FactorizationError, NotPositiveDefiniteError

__all__ = ["SupernodalFactor", "SupernodalInverse", "ORDERINGS", "CHOLMOD_VERSION"]

#: orderings `SupernodalFactor` accepts ("default": CHOLMOD's own choice; "best": all, least fill)
ORDERINGS = ("default", "best", "camd") + tuple(_c.ORDERINGS)
CHOLMOD_VERSION = _c.VERSION
_STATE = {_c.EMPTY: "empty", _c.SYMBOLIC: "symbolic", _c.NUMERIC: "numeric", _c.FAILED: "failed",
          _c.CONSUMED: "consumed"}
_MAX_LISTED = 5
_POSITION_BLOCK = 1 << 22     # pairs located per kernel call (SupernodalFactor.positions)
#: flops of one factorization below which the factorization and the selected inverse run their
#: BLAS on one thread: the supernodes are then small, and a threaded BLAS makes each small call
#: wait for (and spin) its threads: on a loaded 2-core machine a 100k-equation inverse took 5-20 s
#: instead of 0.3 s, T-M (22 Gflop) collapsed the same way with 2 threads, and T-M's factorization
#: took 4.5 s on one thread against 6.7 s on two (load 8.5; on a quiet machine 2 threads changed
#: nothing on M); only the L problems pass this bound
THREADED_FLOPS = 1e11


def _threads_for(flops: float):
    """The thread limit of a factor's numeric work: one thread below `THREADED_FLOPS`, else the
    fit's ``threads`` (:func:`mvreml._threads.fit_threads`; outside a fit, the limit in force);
    CHOLMOD's OpenMP teams held to it in both cases."""
    from contextlib import ExitStack

    from ._threads import blas_threads, large_work_threads, openmp_within_limit

    stack = ExitStack()
    n = 1 if flops < THREADED_FLOPS else large_work_threads()
    if n is not None:
        stack.enter_context(blas_threads(n))
    stack.enter_context(openmp_within_limit())
    return stack


def _lower_csc(C) -> sp.csc_matrix:
    """The lower triangle of a square sparse matrix as sorted CSC (as CHOLMOD reads it)."""
    if not sp.issparse(C) or C.shape[0] != C.shape[1]:
        raise ValueError(f"expected a square sparse matrix, got {type(C).__name__} "
                         f"of shape {getattr(C, 'shape', None)}")
    C = sp.csc_matrix(C)
    rows = C.indices
    cols = np.repeat(np.arange(C.shape[1]), np.diff(C.indptr))
    if np.any(rows < cols):
        C = sp.tril(C, format="csc")
    if not C.has_sorted_indices:
        C = C.copy()
        C.sort_indices()
    return C


class SupernodalFactor:
    """Supernodal LL' factor of a fixed sparsity pattern, refactorized in place.

    Parameters
    ----------
    C : sparse matrix
        Symmetric; its lower triangle is read (the engine passes the lower triangle as CSC).
    ordering : str
        Fill-reducing ordering, one of `ORDERINGS`.
    postorder : bool
        Follow the ordering with CHOLMOD's weighted postorder (bigger supernodes).
    last : int
        With ``ordering="camd"``: the first `last` equations (the fixed effects, in the engine)
        are ordered after all the others (constrained minimum degree), so the trailing block of
        L, and of the selected inverse, holds their whole covariance.
    nrelax, zrelax : tuple, optional
        CHOLMOD's relaxed supernodal amalgamation (3 column limits, 3 fractions of explicit
        zeros); None keeps CHOLMOD's defaults (mvreml.symbolic.NRELAX, ZRELAX), which the
        engine uses: on U-M, B-M and T-M no other setting made factorization + selected
        inverse faster beyond the noise (benchmarks/RESULTS.md, 2026-12-02 07:00).

    Raises
    ------
    ValueError
        On an unknown ordering or a matrix that is not square sparse.
    FactorizationError
        When CHOLMOD's analysis fails (out of memory, an ordering not compiled in).
    """

    def __init__(self, C, ordering: str = "default", postorder: bool = True, last: int = 0,
                 nrelax: tuple | None = None, zrelax: tuple | None = None):
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering={ordering!r}: choose one of {', '.join(ORDERINGS)}")
        C = _lower_csc(C)
        self.n = C.shape[0]
        self.ordering = ordering
        self._src = (C.indptr, C.indices)
        self._indptr = np.ascontiguousarray(C.indptr, dtype=np.int64)
        self._indices = np.ascontiguousarray(C.indices, dtype=np.int64)
        self._f = _c.Factor()
        flags = None
        if ordering == "camd":
            flags = np.zeros(self.n, dtype=np.int64)
            flags[:int(last)] = 1
        try:
            self._f.analyze(self._indptr, self._indices, ordering, bool(postorder), flags,
                            None if nrelax is None else tuple(int(v) for v in nrelax),
                            None if zrelax is None else tuple(float(v) for v in zrelax))
        except _c.CholmodCallError as exc:
            raise FactorizationError(f"symbolic analysis of the {self.n} x {self.n} matrix "
                                     f"failed: {exc}") from None
        # CHOLMOD's figures of this analysis (Common->fl, lnz are overwritten by later calls)
        self._analysis = dict(self._f.analysis(), n=self.n, ordering=ordering)
        self._gram_buffer = None         # inverse_gram's right-hand-side block, reused
        self._structure_checked()

    def _structure_checked(self) -> None:
        sup, pi, px, s = self._f.supernodes()
        code = _k.check_structure(sup, pi, px, s, self.n, int(self._analysis["xsize"]))
        if code:
            raise FactorizationError(f"CHOLMOD's supernodal structure is not the documented one "
                                     f"(check code {code}); the selected inverse cannot walk it")
        self.perm = self._f.perm()
        self.pinv = np.empty(self.n, dtype=np.int64)
        self.pinv[self.perm] = np.arange(self.n, dtype=np.int64)
        col_super = np.repeat(np.arange(sup.shape[0] - 1), np.diff(sup))
        nsrow = np.diff(pi)
        # L[k, k] of permuted column k (position in x), once per analysis
        self._diag = px[col_super] + (np.arange(self.n) - sup[col_super]) * (nsrow[col_super] + 1)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        """"symbolic", "numeric", "failed" or "consumed" (x holds the selected inverse)."""
        return _STATE[self._f.state]

    @property
    def solvable(self) -> bool:
        """True when the factor holds the L of the last successful `factorize`."""
        return self._f.state == _c.NUMERIC

    def analysis(self) -> dict:
        """CHOLMOD's figures of the analysis: flops per factorization, nnz(L), entries of x, supernodes."""
        return dict(self._analysis)

    def P(self) -> np.ndarray:
        """The permutation: row k of L is row P()[k] of C."""
        return self.perm.copy()

    def copy(self) -> "SupernodalFactor":
        """An independent copy (analysis and values), e.g. for a model refitted on new responses."""
        new = object.__new__(SupernodalFactor)
        new.__dict__.update(self.__dict__)
        new._f = self._f.copy()
        new._gram_buffer = None
        return new

    # ------------------------------------------------------------------ numbers
    def _pattern(self, C) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """int64 pattern and float64 values of C's lower triangle, checked against the analysis."""
        if sp.issparse(C) and C.format == "csc" and C.indptr is self._src[0] and C.indices is self._src[1]:
            # the engine's C: the same pattern arrays at every iterate
            return self._indptr, self._indices, np.ascontiguousarray(C.data, dtype=np.float64)
        L = _lower_csc(C)
        if (L.shape[0] != self.n or L.indices.shape != self._indices.shape
                or not np.array_equal(L.indptr, self._indptr) or not np.array_equal(L.indices, self._indices)):
            raise ValueError("the matrix's pattern is not the one analysed; make a new SupernodalFactor")
        return self._indptr, self._indices, np.ascontiguousarray(L.data, dtype=np.float64)

    def factorize(self, C) -> None:
        """Numeric factorization of C (same pattern as analysed), in place.

        Raises
        ------
        NotPositiveDefiniteError
            C is not positive definite; ``column`` is the equation (original order of C) whose
            pivot failed.
        FactorizationError
            Any other CHOLMOD failure (out of memory, invalid input).
        """
        indptr, indices, data = self._pattern(C)
        try:
            with _threads_for(self._analysis["flops"]):
                minor = self._f.factorize(indptr, indices, data)
        except _c.CholmodCallError as exc:
            raise FactorizationError(f"numeric factorization failed: {exc}") from None
        if minor >= 0:
            column = int(self.perm[minor]) if minor < self.n else None
            raise NotPositiveDefiniteError(
                f"matrix not positive definite: the pivot of equation {column} (position {minor} "
                f"of the fill-reducing order) is not positive", column=column)

    def _numeric(self) -> np.ndarray:
        if not self.solvable:
            raise FactorizationError(f"no Cholesky factor to use: the factor is {self.state} "
                                     f"(factorize again; the selected inverse overwrites it)")
        return self._f.values()

    def logdet(self) -> float:
        """log|C| = 2 sum log diag(L), from the supernodes' diagonals."""
        d = self._numeric()[self._diag]
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(2.0 * np.log(d).sum())

    def solve(self, B) -> np.ndarray:
        """C^-1 B (B: a vector, a dense n x k block or a sparse matrix; dense result, B's shape)."""
        self._numeric()
        B = B.toarray() if sp.issparse(B) else np.asarray(B, dtype=np.float64)
        if B.ndim not in (1, 2) or B.shape[0] != self.n:
            raise ValueError(f"right-hand side of shape {B.shape} for a {self.n} x {self.n} matrix")
        X = self._f.solve(np.asfortranarray(B.reshape(self.n, 1 if B.ndim == 1 else B.shape[1]), dtype=np.float64))
        return X.reshape(B.shape) if B.ndim == 1 else X

    __call__ = solve

    def inverse_gram(self, B) -> np.ndarray:
        """B' C^-1 B (m x m, dense) for a sparse n x m block B, by forward solves only.

        ||L^-1 P b||^2 instead of b' (C^-1 b): each column is solved only on the supernodes it
        reaches (mvreml._core.fgram), which for columns nonzero on a few blocks of equations is
        a small part of L, and no backward solve is needed. The columns are taken in the order
        of the first supernode they touch, so that the columns reaching a supernode are a short
        range (the caller's order is restored in the result). The dense n x m block of the
        solves is kept on the factor for the next call (reused while m does not grow).
        """
        x = self._numeric()
        B = sp.csc_matrix(B, copy=True)          # sum_duplicates below must not touch the caller's
        if B.shape[0] != self.n:
            raise ValueError(f"B of shape {B.shape} for a {self.n} x {self.n} matrix")
        m = B.shape[1]
        B.sum_duplicates()
        sup, pi, px, s = self._f.supernodes()
        col_super = np.repeat(np.arange(sup.shape[0] - 1), np.diff(sup))
        first = np.full(m, sup.shape[0], dtype=np.int64)
        nz = np.flatnonzero(np.diff(B.indptr))
        if nz.size:
            rows_l = col_super[self.pinv[B.indices]]
            first[nz] = np.minimum.reduceat(rows_l, B.indptr[nz])
        order = np.argsort(first, kind="stable")
        Bo = B[:, order]
        Bo.sort_indices()
        indptr = np.ascontiguousarray(Bo.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(Bo.indices, dtype=np.int64)
        lo = np.empty(sup.shape[0] - 1, dtype=np.int64)
        hi = np.empty_like(lo)
        _g.column_ranges(sup, pi, s, self.pinv, indptr, indices, lo, hi)
        # the n x m block is kept for the next call: fresh pages of this size cost more than
        # the solves (first touch of 215 MB took 0.6 s CPU on the MET-M machine, a reused block
        # 0.03 s to clear)
        if self._gram_buffer is None or self._gram_buffer.size < self.n * m:
            self._gram_buffer = None
            self._gram_buffer = np.empty(self.n * m)
        Y = self._gram_buffer[:self.n * m].reshape((self.n, m), order="F")
        Y.fill(0.0)
        Y[self.pinv[indices], np.repeat(np.arange(m), np.diff(indptr))] = Bo.data
        G = np.zeros((m, m), order="F")
        # as the selected inverse: one BLAS thread below THREADED_FLOPS, where the supernodes
        # are small (2 threads on a loaded machine: MET-M's 0.5 s became 7.9 s)
        with _threads_for(self._analysis["flops"]):
            _g.forward_gram(sup, pi, px, s, x, Y, lo, hi, G)
        G = np.tril(G)
        G = G + np.tril(G, -1).T
        out = np.empty((m, m))
        out[np.ix_(order, order)] = G
        return out

    def positions(self, rows, cols) -> np.ndarray:
        """Position in the factor's values of each (row, col) pair of C (original order, either
        triangle); -1 for a pair outside the pattern of L. Pairs must lie in [0, n)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        out = np.empty(rows.size, dtype=np.int64)
        sup, pi, px, s = self._f.supernodes()
        # in blocks: the permuted pairs are temporaries of 16 bytes a pair, held to one block
        for lo in range(0, rows.size, _POSITION_BLOCK):
            hi = min(lo + _POSITION_BLOCK, rows.size)
            _k.pair_positions(sup, pi, px, s, self.pinv[rows[lo:hi]], self.pinv[cols[lo:hi]], out[lo:hi])
        return out


def _describe(rows, cols, which) -> str:
    """The first pairs of `which` as text, for an error message."""
    listed = ", ".join(f"({rows[q]}, {cols[q]})" for q in which[:_MAX_LISTED])
    return listed + (f" and {which.size - _MAX_LISTED} more" if which.size > _MAX_LISTED else "")


class SupernodalInverse:
    """C^-1 on chosen (row, col) pairs of C, computed in place over a `SupernodalFactor`.

    Parameters
    ----------
    factor : SupernodalFactor
    rows, cols : array_like of int
        Pairs of C (original order, either triangle) whose inverse entries are wanted.
    in_place : bool
        True (the engine's choice): the inverse overwrites the factor's values, which is then
        consumed. False: it is computed in a buffer the size of the factor, kept across calls.

    Raises
    ------
    FactorizationError
        A pair outside the pattern of the factor (its inverse entry is not computed).
    """

    def __init__(self, factor: SupernodalFactor, rows, cols, in_place: bool = True):
        rows, cols = np.asarray(rows), np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError(f"rows and cols must be 1-D of one length, got shapes {rows.shape} and {cols.shape}")
        if rows.size and not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
            raise ValueError("rows and cols must be integer arrays")
        n = factor.n
        # the pairs are only read here: the inverse keeps their positions in the factor alone
        # (8 bytes a pair; 40.5M pairs of C on T-L), and int64 input is not copied
        rows, cols = rows.astype(np.int64, copy=False), cols.astype(np.int64, copy=False)
        bad = np.flatnonzero((rows < 0) | (rows >= n) | (cols < 0) | (cols >= n))
        if bad.size:
            raise ValueError(f"pairs out of range for a {n} x {n} matrix: {_describe(rows, cols, bad)}")
        self._nsuper = factor._f.supernodes()[0].shape[0] - 1
        self._pos = factor.positions(rows, cols)
        absent = np.flatnonzero(self._pos < 0)
        if absent.size:
            raise FactorizationError(f"{absent.size} requested pair(s) of C lie outside the pattern of its "
                                     f"Cholesky factor, so the selected inverse does not contain them: "
                                     f"{_describe(rows, cols, absent)}")
        self._diag_pos = factor._diag[factor.pinv]
        self.n = n
        self.in_place = bool(in_place)
        self._buffer = None
        self._z = None
        self._factor = None

    @property
    def n_supernodes(self) -> int:
        """Number of supernodes the kernel walks."""
        return self._nsuper

    def compute(self, factor: SupernodalFactor) -> "SupernodalInverse":
        """Run the selected inversion on the factor's current values (nothing to do when the
        factor already holds the inverse of its last factorization); returns self."""
        self._factor = factor
        if factor._f.state == _c.CONSUMED:
            self._z = factor._f.values()
            return self
        x = factor._numeric()
        if not self.in_place:
            if self._buffer is None or self._buffer.shape != x.shape:
                self._buffer = np.empty_like(x)
            np.copyto(self._buffer, x)
            x = self._buffer
        info = np.zeros(2, dtype=np.int64)
        sup, pi, px, s = factor._f.supernodes()     # this factor's (a copy's are its own)
        with _threads_for(factor._analysis["flops"]):
            _k.selinv_inplace(sup, pi, px, s, x, info)
        if self.in_place:
            factor._f.mark_consumed()        # even on failure: x is partly overwritten
        code, col = int(info[0]), int(info[1])
        if code == 1:
            raise FactorizationError(f"the factor's pattern is not closed under elimination at permuted "
                                     f"column {col} (column {factor.perm[col]} of C)")
        if code == 2:
            raise FactorizationError(f"singular diagonal block in the factor at permuted column {col} "
                                     f"(column {factor.perm[col]} of C); C is not positive definite")
        if code == 3:
            raise MemoryError("no memory for the selected-inverse workspace")
        if code == 4:
            self._z = None                   # a partial inverse is no inverse
            raise KeyboardInterrupt
        self._z = x
        return self

    def _values(self, factor) -> np.ndarray:
        if factor is not None:
            self.compute(factor)
        if self._z is None or (self.in_place and self._factor._f.state != _c.CONSUMED):
            # in place, the inverse lives in the factor: a later factorize overwrote it
            raise FactorizationError("no selected inverse of the current factor: pass the factor")
        return self._z

    def values(self, factor: SupernodalFactor | None = None) -> np.ndarray:
        """C^-1[rows, cols] (a new array, in the order given), computing it first when `factor` is given."""
        return self._values(factor)[self._pos]

    def diagonal(self, factor: SupernodalFactor | None = None) -> np.ndarray:
        """diag(C^-1) in the original order (``factor`` as in `values`)."""
        return self._values(factor)[self._diag_pos]

    def read(self, positions: np.ndarray, factor: SupernodalFactor | None = None) -> np.ndarray:
        """C^-1 at positions from `SupernodalFactor.positions` (all >= 0), ``factor`` as in `values`."""
        return self._values(factor)[positions]
