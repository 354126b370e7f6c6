"""Henderson's mixed-model equations on a fixed sparsity pattern.

C = W'R^-1 W + blockdiag(0, K_1^-1 (x) G_1^-1, ...), stored as its lower triangle (CSC), with
W = [X Z_1 ... Z_K]. The pattern does not depend on the variance parameters, so it is built
once: the values of C are then *linear* in the entries of R^-1 (per unit) and of each
G_k^-1, and assembling C is two sparse matrix-vector products into a fixed data array.
The same linear maps, transposed, give the trace terms of the score (the adjoint of
assembly): sum_i tr(B_i W_i C^-1 W_i') and sum_ab K^-1_ab C^{kb,ka} from selected entries
of C^-1 on the pattern of C.

The pattern and the maps are built by compiled kernels (``mvreml._core.mme``) that write
straight into their final arrays: memory is that of the results, with no intermediate
per-product index arrays (a three-trait model on a million animals has ~10^8 products).

Random effects are ordered level-major (level a's t-vector contiguous), as docs/THEORY.md says.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._core import mme as _k
from .design import Design
from .errors import ModelError

_INT32_MAX = np.iinfo(np.int32).max


def _ordered_unit_pairs(unit_start: np.ndarray):
    """All ordered pairs (a, b) of observations within each unit, row-major (CSR order)."""
    n = np.diff(unit_start)
    npairs = n * n
    total = int(npairs.sum())
    unit = np.repeat(np.arange(len(n)), npairs)
    first = np.concatenate([[0], np.cumsum(npairs)[:-1]])
    k = np.arange(total) - np.repeat(first, npairs)
    nu = n[unit]
    ia = k // nu
    ib = k % nu
    start = unit_start[:-1][unit]
    swap = first[unit] + ib * nu + ia       # index of the pair (b, a)
    return unit, ia, ib, start + ia, start + ib, swap


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _csc_from_counts(counts_ptr: tuple, fill, n_rows: int, n_cols: int, idx) -> tuple:
    """Run a kernel's filling pass into arrays sized by its counting pass; returns (M, D).

    `counts_ptr` = (m_ptr, d_ptr) after the counting pass (counts at [i + 1]); `fill` calls
    the kernel with the output arrays. M and D are CSC (n_rows x n_cols), one column per
    pair / G^-1 entry, positions unsorted inside a column (no duplicates by construction).
    """
    m_ptr, d_ptr = counts_ptr
    np.cumsum(m_ptr, out=m_ptr)
    np.cumsum(d_ptr, out=d_ptr)
    m_pos = np.empty(int(m_ptr[-1]), dtype=idx)
    m_val = np.empty(int(m_ptr[-1]))
    d_pos = np.empty(int(d_ptr[-1]), dtype=idx)
    d_val = np.empty(int(d_ptr[-1]))
    missing = fill(m_ptr, m_pos, m_val, d_ptr, d_pos, d_val)
    if missing:
        raise ModelError(f"internal error: {missing} products fall outside the pattern of the "
                         "mixed-model equations")
    ptr_t = idx if max(m_ptr[-1], d_ptr[-1]) <= _INT32_MAX else np.int64
    M = sp.csc_matrix((m_val, m_pos, m_ptr.astype(ptr_t)), shape=(n_rows, n_cols))
    D = sp.csc_matrix((d_val, d_pos, d_ptr.astype(ptr_t)), shape=(n_rows, n_cols))
    return M, D


def residual_maps(w_indptr, w_indices, w_data, pair_a, pair_b, c_indptr, c_indices) -> tuple:
    """(M, D): the map of W'R^-1 W into the lower pattern (c_indptr, c_indices) of C, one
    column per pair of records (a, b) -- C.data += M @ r_ab -- and its diagonal products D.

    W (CSR, sorted columns) may be any rows of the design with the pairs indexing them: a
    rank of a distributed backend builds the map of its own records (mvreml.backends.share).
    """
    idx = c_indices.dtype
    npair = len(pair_a)
    nnz = int(c_indices.shape[0])
    if npair == 0 or nnz == 0:
        empty = sp.csc_matrix((nnz, npair))
        return empty, empty.copy()

    def fill(*out):
        return _k.residual_map(w_indptr, w_indices, w_data, pair_a, pair_b, c_indptr, c_indices, *out, True)

    counts = (np.zeros(npair + 1, np.int64), np.zeros(npair + 1, np.int64))
    empty_pos, empty_val = np.empty(0, idx), np.empty(0)
    _k.residual_map(w_indptr, w_indices, w_data, pair_a, pair_b, c_indptr, c_indices,
                    counts[0], empty_pos, empty_val, counts[1], empty_pos, empty_val, False)
    return _csc_from_counts(counts, fill, nnz, npair, idx)


class MMEPattern:
    """Sparsity pattern of C and the linear maps that fill it.

    Parameters
    ----------
    design : Design

    Attributes
    ----------
    W : scipy.sparse.csr_matrix
        [X Z_1 ... Z_K] (N x P).
    offsets : list of int
        First column of each random term in W.
    indptr, indices : np.ndarray
        CSC pattern of the lower triangle of C (sorted; int32 while it fits).
    pair_unit, pair_ia, pair_ib, pair_a, pair_b : np.ndarray
        The within-unit ordered observation pairs (entries of the block-diagonal R^-1).
    M_R, M_Rdiag : scipy.sparse.csc_matrix
        nnz x n_pairs: C.data += M_R @ rinv_pairs; M_Rdiag keeps the diagonal products.
    M_G, G_diag : list of scipy.sparse.csc_matrix
        Per random term, nnz x t^2: C.data += M_G[k] @ vec(G_k^-1) (row-major).
    """

    def __init__(self, design: Design):
        self.design = design
        self.W, self.offsets, self.n_eq = self._stack(design)
        if design.rpairs is None:
            unit, ia, ib, a, b, swap = _ordered_unit_pairs(design.unit_start)
        else:
            # a spatial residual: the pairs of records where R^-1 is nonzero (sorted by a, b)
            a, b = design.rpairs
            unit, ia, ib = design.obs_unit[a], np.zeros_like(a), np.zeros_like(a)
            key = a * design.n_obs + b
            swap = np.searchsorted(key, b * design.n_obs + a)
        self.pair_swap = swap
        self.pair_unit, self.pair_ia, self.pair_ib, self.pair_a, self.pair_b = unit, ia, ib, a, b
        N = design.n_obs
        self.d_indptr = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=N))]).astype(np.int64)

        W = self.W
        w_indptr, w_indices = _i64(W.indptr), _i64(W.indices)
        w_data = np.ascontiguousarray(W.data, dtype=np.float64)
        kinvs = [sp.csc_matrix(rd.kinv) for rd in design.random]
        for K in kinvs:
            K.sum_duplicates()          # sorted rows, as the kernels search them
        self.indptr, self.indices = self._lower_pattern(design, w_indptr, w_indices, kinvs)
        self.nnz = int(self.indices.shape[0])
        c_indptr = _i64(self.indptr)
        idx = self.indices.dtype
        pa, pb = _i64(a), _i64(b)

        self.M_R, self.M_Rdiag = residual_maps(w_indptr, w_indices, w_data, pa, pb, c_indptr, self.indices)
        empty_pos, empty_val = np.empty(0, idx), np.empty(0)

        self.M_G = []
        self.G_diag = []   # the (a == b, r == s) entries, for the trace of the symmetric sum
        self.k_ids = []    # AR1 terms: which entry of K^-1 each value of M_G / G_diag is
        for K, rd, off in zip(kinvs, design.random, self.offsets):
            t = rd.t
            kp, ki = _i64(K.indptr), _i64(K.indices)
            kd = np.ascontiguousarray(K.data, dtype=np.float64)
            if rd.kcor is not None:
                # K^-1 depends on theta: map the entries' numbers (1, 2, ...) instead of their
                # values, so the maps at any theta are a gather (set_kinv)
                kd = np.arange(1.0, len(kd) + 1.0)

            def fill_g(*out, kp=kp, ki=ki, kd=kd, off=off, t=t):
                return _k.term_map(kp, ki, kd, off, t, c_indptr, self.indices, *out, True)

            counts = (np.zeros(t * t + 1, np.int64), np.zeros(t * t + 1, np.int64))
            _k.term_map(kp, ki, kd, off, t, c_indptr, self.indices,
                        counts[0], empty_pos, empty_val, counts[1], empty_pos, empty_val, False)
            M, D = _csc_from_counts(counts, fill_g, self.nnz, t * t, idx)
            self.M_G.append(M)
            self.G_diag.append(D)
            self.k_ids.append(None if rd.kcor is None else (M.data.astype(np.int64) - 1, D.data.astype(np.int64) - 1))

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _stack(design: Design):
        """W = [X Z_1 ... Z_K] (CSR, sorted), the terms' first columns and the order of C."""
        N = design.n_obs
        blocks = [design.X.tocsr()]
        offsets = []
        col = design.p
        for rd in design.random:
            # Z_k from the design's (observation, level x compound, value) entries: the compound index
            # is the trait, a site, a basis coefficient or a product of them (design.py)
            rows, cols = rd.obs_rows, rd.obs_cols
            vals = np.ones(len(rows)) if rd.obs_vals is None else rd.obs_vals
            blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=(N, rd.q * rd.t)))
            offsets.append(col)
            col += rd.q * rd.t
        W = sp.hstack(blocks, format="csr")
        W.sort_indices()
        return W, offsets, col

    def _lower_pattern(self, design: Design, w_indptr, w_indices, kinvs):
        """Sorted CSC pattern of the lower triangle of C (int32 while it fits)."""
        P = self.n_eq
        Wc = self.W.tocsc()
        Wc.sort_indices()
        wc_indptr, wc_indices = _i64(Wc.indptr), _i64(Wc.indices)
        del Wc
        term_first = _i64(list(self.offsets) + [P])
        term_t = _i64([rd.t for rd in design.random])
        k_indptr = [np.zeros(0, np.int64)]
        k_indices = [np.zeros(0, np.int64)]
        term_kptr, start, base = [], 0, 0
        for K in kinvs:
            term_kptr.append(start)
            k_indptr.append(_i64(K.indptr) + base)
            k_indices.append(_i64(K.indices))
            start += K.shape[0] + 1
            base += K.indices.shape[0]
        k_indptr = np.concatenate(k_indptr)
        k_indices = np.concatenate(k_indices)
        term_kptr = _i64(term_kptr)
        nb_ptr, nb_idx = _i64(self.d_indptr), _i64(self.pair_b)
        col_mark = np.full(P, -1, np.int64)
        unit_mark = np.full(design.n_obs, -1, np.int64)
        row_ptr = np.zeros(P + 1, np.int64)
        args = (w_indptr, w_indices, wc_indptr, wc_indices, nb_ptr, nb_idx,
                term_first, term_t, term_kptr, k_indptr, k_indices, col_mark, unit_mark, row_ptr)
        _k.lower_rows(*args, np.empty(0, np.int32), False)
        np.cumsum(row_ptr, out=row_ptr)
        nnz = int(row_ptr[-1])
        idx = np.int32 if max(nnz, P) <= _INT32_MAX else np.int64
        cols = np.empty(nnz, idx)
        col_mark.fill(-1)
        unit_mark.fill(-1)
        _k.lower_rows(*args, cols, True)
        del col_mark, unit_mark
        col_ptr = np.zeros(P + 1, np.int64)
        rows = np.empty(nnz, idx)
        _k.transpose_pattern(row_ptr, cols, col_ptr, rows)
        return col_ptr.astype(idx), rows

    # ------------------------------------------------------------------ pattern coordinates
    def diagonal(self, values: np.ndarray) -> np.ndarray:
        """diag of a matrix given on the lower pattern of C (e.g. C^-1 from the selected inverse).

        Every column of the pattern starts with its diagonal (K^-1 and the nonzero columns of
        X put it there), so no second selected inversion is needed for the PEVs.
        """
        return values[self.indptr[:-1]]

    @property
    def rows(self) -> np.ndarray:
        """Row (int64) of every stored entry of the lower triangle of C."""
        return self.indices.astype(np.int64)

    @property
    def cols(self) -> np.ndarray:
        """Column (int64) of every stored entry of the lower triangle of C."""
        return np.repeat(np.arange(self.n_eq, dtype=np.int64), np.diff(self.indptr))

    # ------------------------------------------------------------------ assembly
    def rinv_matrix(self, rinv_pairs: np.ndarray) -> sp.csr_matrix:
        """Block-diagonal R^-1 (N x N) from its within-unit entries (pair order)."""
        N = self.design.n_obs
        return sp.csr_matrix((rinv_pairs, self.pair_b, self.d_indptr), shape=(N, N))

    def assemble(self, rinv_pairs: np.ndarray, ginvs: list) -> sp.csc_matrix:
        """Lower triangle of C for R^-1 entries `rinv_pairs` and the terms' G^-1 matrices."""
        data = self.M_R @ rinv_pairs
        for M, Gi in zip(self.M_G, ginvs):
            data += M @ np.ascontiguousarray(Gi).ravel()
        P = self.n_eq
        return sp.csc_matrix((data, self.indices, self.indptr), shape=(P, P))

    # ------------------------------------------------------------------ adjoints
    def residual_trace_pairs(self, cinv: np.ndarray) -> np.ndarray:
        """(W C^-1 W')[a, b] for every within-unit ordered pair (a, b).

        `cinv` holds C^-1 on the lower pattern of C. M' x sums the lower entries only; an
        entry above the diagonal is the transpose of one below, met by the swapped pair
        (b, a); diagonal entries would be counted twice.
        """
        half = self.M_R.T @ cinv
        return half + half[self.pair_swap] - self.M_Rdiag.T @ cinv

    def term_trace(self, k: int, cinv: np.ndarray, kdata: np.ndarray | None = None) -> np.ndarray:
        """sum_ab K^-1_ab C^{k a, k b} (t x t) for random term k; with ``kdata`` (the values of
        an AR1 term's K^-1 pattern, or of a derivative of it) that matrix instead of K^-1."""
        t = self.design.random[k].t
        M, D = (self.M_G[k], self.G_diag[k]) if kdata is None else self._kmaps(k, kdata)
        T = (M.T @ cinv).reshape(t, t)
        Dg = (D.T @ cinv).reshape(t, t)
        return T + T.T - Dg

    def _kmaps(self, k: int, kdata: np.ndarray):
        im, idg = self.k_ids[k]
        M, D = self.M_G[k], self.G_diag[k]
        return (sp.csc_matrix((kdata[im], M.indices, M.indptr), shape=M.shape),
                sp.csc_matrix((kdata[idg], D.indices, D.indptr), shape=D.shape))

    def set_kinv(self, k: int, kdata: np.ndarray) -> None:
        """Make the maps of AR1 term k those of K^-1 with values ``kdata`` (its pattern's order)."""
        self.M_G[k], self.G_diag[k] = self._kmaps(k, kdata)
