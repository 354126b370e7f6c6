"""Size and work of a Cholesky factor from the pattern of C and a permutation, no numbers.

``factor_sizes(indptr, indices, perm)`` permutes the pattern of C (its lower triangle, CSC),
builds the elimination tree, counts the entries of every column of L (Gilbert-Ng-Peyton,
``mvreml._core.symbolic``) and partitions the columns into CHOLMOD's relaxed supernodes, so
that what CHOLMOD will store is known before it factorizes anything:

- ``nnz_l``: entries of L (exact fill, diagonal included) = sum_j cc_j;
- ``flops``: sum_j cc_j^2, the operation count of one numeric factorization as CHOLMOD
  states it (``Common->fl``; the multiply-adds of the LL' updates, up to lower-order terms);
- ``supernodal``: CHOLMOD's choice in mode "auto" (flops / nnz(L) >= 40);
- ``super_values``: values a supernodal factor stores (the dense nsrow x nscol block of each
  relaxed supernode: the upper triangles of the diagonal blocks and the relaxed zeros
  included); ``super_lower``: its lower-triangular part, the entries ``Factor.L()`` returns.

The permutation must be the one CHOLMOD's analysis returns (``analyze(C).P()``): it is
postordered, as the supernodal partition requires.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._core import symbolic as _k

#: CHOLMOD's defaults (cholmod_common.c): relaxed amalgamation and the supernodal switch
NRELAX = (4, 16, 48)
ZRELAX = (0.8, 0.1, 0.05)
SUPERNODAL_SWITCH = 40.0
_INT32_MAX = np.iinfo(np.int32).max


@dataclass
class FactorSizes:
    """Column counts and supernodes of L (see the module notes)."""

    n: int
    counts: np.ndarray          # entries of each column of L, diagonal included (permuted order)
    parent: np.ndarray          # elimination tree of P C P'
    super_ptr: np.ndarray       # first column of each relaxed supernode, then n
    super_rows: np.ndarray      # rows of each relaxed supernode

    @property
    def nnz_l(self) -> int:
        return int(self.counts.sum())

    @property
    def flops(self) -> float:
        c = self.counts.astype(float)
        return float(c @ c)

    @property
    def supernodal(self) -> bool:
        """CHOLMOD's choice in mode "auto": supernodal when flops per entry of L >= 40."""
        return self.n > 0 and self.flops / max(self.nnz_l, 1) >= SUPERNODAL_SWITCH

    @property
    def n_supernodes(self) -> int:
        return int(self.super_rows.size)

    @property
    def super_values(self) -> int:
        """Values of the supernodal factor: sum over supernodes of rows x columns."""
        cols = np.diff(self.super_ptr)
        return int(cols @ self.super_rows)

    @property
    def super_lower(self) -> int:
        """Entries of the lower triangle of the supernodal factor (relaxed zeros included)."""
        cols = np.diff(self.super_ptr)
        return int(cols @ self.super_rows - (cols * (cols - 1) // 2).sum())

    @property
    def super_index(self) -> int:
        """Row indices the supernodal factor stores (one list per supernode)."""
        return int(self.super_rows.sum())

    @property
    def largest_supernode(self) -> tuple[int, int]:
        """(rows, columns) of the supernode with the largest dense block."""
        if not self.n_supernodes:
            return (0, 0)
        cols = np.diff(self.super_ptr)
        s = int(np.argmax(cols * self.super_rows))
        return int(self.super_rows[s]), int(cols[s])


def _index(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype not in (np.int32, np.int64):
        a = a.astype(np.int64)
    return np.ascontiguousarray(a)


def factor_sizes(indptr, indices, perm, nrelax=NRELAX, zrelax=ZRELAX) -> FactorSizes:
    """Column counts and CHOLMOD's relaxed supernodes of the Cholesky factor of P C P'.

    Parameters
    ----------
    indptr, indices : array_like of int
        CSC pattern of the lower triangle of C (n x n); entries above the diagonal are read
        as their mirror image, the diagonal may be absent (it is always in L).
    perm : array_like of int
        The fill-reducing permutation: row k of the factored matrix is row ``perm[k]`` of C
        (CHOLMOD's ``P()``).
    nrelax, zrelax : tuple
        The relaxed amalgamation the factor was analysed with (CHOLMOD's defaults unless the
        analysis was given others: `mvreml.chol.SupernodalFactor`'s ``nrelax``, ``zrelax``).

    Returns
    -------
    FactorSizes

    Raises
    ------
    ValueError
        ``perm`` is not a permutation of 0..n-1, the pattern is not CSC of an n x n
        matrix, or n does not fit 32-bit row indices.
    """
    indptr, indices = _index(indptr), _index(indices)
    if indptr.dtype != indices.dtype:
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)
    n = indptr.size - 1
    perm = np.asarray(perm, dtype=np.int64)
    if n < 0 or perm.shape != (n,):
        raise ValueError(f"perm has {perm.size} entries for a matrix of order {n}")
    if n > _INT32_MAX:
        raise ValueError(f"order {n} does not fit 32-bit row indices")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.size:
        raise ValueError("indptr is not a CSC column pointer of the given indices")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"row indices outside 0..{n - 1}")
    pinv = np.full(n, -1, np.int64)
    pinv[perm] = np.arange(n, dtype=np.int64)
    if n and (perm.min() < 0 or perm.max() >= n or np.any(pinv < 0)):
        raise ValueError("perm is not a permutation of 0..n-1")
    m = int(indices.size)
    up_ptr, lo_ptr = np.empty(n + 1, np.int64), np.empty(n + 1, np.int64)
    up_idx, lo_idx = np.empty(m, np.int32), np.empty(m, np.int32)
    fill = np.empty(n, np.int64)
    m = _k.permute_pattern(indptr, indices, pinv, up_ptr, up_idx, lo_ptr, lo_idx, fill)
    up_idx, lo_idx = up_idx[:m], lo_idx[:m]
    parent = np.empty(n, np.int64)
    _k.etree(up_ptr, up_idx, parent, fill)
    del up_ptr, up_idx
    post = np.empty(n, np.int64)
    scratch = [np.empty(n, np.int64) for _ in range(2)]
    _k.postorder(parent, post, fill, *scratch)
    counts = np.empty(n, np.int64)
    _k.column_counts(lo_ptr, lo_idx, parent, post, counts, np.empty(4 * n, np.int64))
    del lo_ptr, lo_idx
    super_ptr, snz = np.empty(n + 1, np.int64), np.empty(n + 1, np.int64)
    # CHOLMOD (32-bit indices) refuses to relax a supernode whose block would pass Int_max / 8
    if len(nrelax) != 3 or len(zrelax) != 3:
        raise ValueError(f"nrelax and zrelax need 3 values each, got {nrelax!r}, {zrelax!r}")
    ns = _k.relaxed_supernodes(parent, counts, *(int(v) for v in nrelax), *(float(v) for v in zrelax),
                               _INT32_MAX / 8.0,
                               super_ptr, snz, np.empty(4 * (n + 1), np.int64))
    return FactorSizes(n=n, counts=counts, parent=parent, super_ptr=super_ptr[:ns + 1].copy(),
                       super_rows=snz[:ns].copy())
