"""Each rank's share of the mixed-model equations, for a backend given C distributed (MUMPS).

C = W'R^-1 W + blockdiag(0, K_1^-1 (x) G_1^-1, ...). Its first part is a sum over the pairs
of records (a, b) within a unit (or the nonzeros of a spatial R^-1) of W_a' r_ab W_b, so the
pairs can be split over the ranks: rank r, given the rows of W its pairs touch, builds its
own lower pattern of sum_q W_aq' W_bq and the linear map of its r_ab into it
(:func:`mvreml.mme.residual_maps`, the kernel of the engine's own assembly). At an iterate
it needs only the R^-1 blocks by missing-value pattern (``rstack``: patterns x t x t,
broadcast), from which it recomputes its r_ab exactly as rank 0 does; a spatial residual's
r_ab, which no small matrix determines, are scattered instead (each rank its own pairs).

The G^-1 part stays on rank 0, which holds the maps of the whole pattern for the score's
traces anyway (and which recomputes an AR1 term's K^-1 at every iterate); on more than one
rank, rank 0 takes no records, its share being that part. The entries two ranks give at the
same (row, column) -- an animal's diagonal gets its records' part on one rank and its
A^-1 part on rank 0 -- are summed by MUMPS (distributed assembled input, ICNTL(18)=3).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["LocalShare", "pair_ranges", "piece"]


def pair_ranges(n_pairs: int, size: int) -> list:
    """The contiguous ranges of pairs [lo, hi) of every rank: rank 0 none when size > 1."""
    if size == 1:
        return [(0, n_pairs)]
    bounds = np.linspace(0, n_pairs, size).round().astype(np.int64)
    return [(0, 0)] + [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def piece(model, lo: int, hi: int, stack: bool) -> dict:
    """What a rank needs to build its share from the pairs lo:hi of `model` (a REMLModel):
    the rows of W they touch (CSR), the pairs indexing those rows, and with `stack` the pairs'
    missing-value pattern, positions and weights (to read r_ab from R^-1 by pattern)."""
    pat = model.pattern
    a, b = pat.pair_a[lo:hi], pat.pair_b[lo:hi]
    rows, local = np.unique(np.concatenate([a, b]), return_inverse=True)
    W = pat.W[rows]
    out = dict(n=int(pat.n_eq), indptr=W.indptr, indices=W.indices, data=W.data, n_rows=len(rows),
               a=local[:len(a)].astype(np.int64), b=local[len(a):].astype(np.int64))
    if stack:
        out.update(pattern=model.pair_pattern[lo:hi], ia=pat.pair_ia[lo:hi], ib=pat.pair_ib[lo:hi],
                   w=model.pair_w[lo:hi])
    return out


class LocalShare:
    """One rank's records' part of C, W_r' R_r^-1 W_r, as (row, column, value) entries of its
    lower triangle: ``irn`` / ``jcn`` (1-based, MUMPS's) and :meth:`values` at an iterate."""

    def __init__(self, part: dict | None):
        from ..mme import residual_maps

        if part is None or len(part["a"]) == 0:
            self.irn = self.jcn = np.empty(0, np.int32)
            self.M = None
            self.part = None
            return
        n = part["n"]
        W = sp.csr_matrix((part["data"], part["indices"], part["indptr"]), shape=(part["n_rows"], n))
        W.sort_indices()
        a, b = part["a"], part["b"]
        # the local pattern: every (c1, c2), c1 >= c2, of a pair's products W[a, c1] W[b, c2]
        # (ones: no product cancels, so no entry the map needs is left out)
        ones = sp.csr_matrix((np.ones(W.nnz), W.indices, W.indptr), shape=W.shape)
        L = sp.tril((ones[a].T @ ones[b]).tocsc()).tocsc()
        L.sort_indices()
        indptr = np.ascontiguousarray(L.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(L.indices, dtype=np.int32)
        self.M, _ = residual_maps(np.ascontiguousarray(W.indptr, dtype=np.int64),
                                  np.ascontiguousarray(W.indices, dtype=np.int64),
                                  np.ascontiguousarray(W.data, dtype=np.float64), a, b, indptr, indices)
        self.irn = indices + np.int32(1)
        self.jcn = (np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)) + 1).astype(np.int32)
        self.part = {k: part[k] for k in ("pattern", "ia", "ib", "w") if k in part}

    @property
    def n_pairs(self) -> int:
        return 0 if self.M is None else self.M.shape[1]

    def values(self, rstack=None, rinv=None) -> np.ndarray:
        """The entries' values for R^-1 by pattern `rstack` (the pairs' r_ab read from it and
        weighted, as the engine does) or for the pairs' r_ab `rinv` themselves."""
        if self.M is None:
            return np.empty(0)
        if rinv is None:
            p = self.part
            rinv = rstack[p["pattern"], p["ia"], p["ib"]] * p["w"]
        return self.M @ rinv
