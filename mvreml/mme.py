"""Henderson's mixed-model equations on a fixed sparsity pattern.

C = W'R^-1 W + blockdiag(0, K_1^-1 (x) G_1^-1, ...), stored as its lower triangle (CSC), with
W = [X Z_1 ... Z_K]. The pattern does not depend on the variance parameters, so it is built
once: the values of C are then *linear* in the entries of R^-1 (per unit) and of each
G_k^-1, and assembling C is two sparse matrix-vector products into a fixed data array.
The same linear maps, transposed, give the trace terms of the score (the adjoint of
assembly): sum_i tr(B_i W_i C^-1 W_i') and sum_ab K^-1_ab C^{kb,ka} from selected entries
of C^-1 on the pattern of C.

Random effects are ordered level-major (level a's t-vector contiguous), as THEORY.md says.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .design import Design


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
        CSC pattern of the lower triangle of C (sorted).
    pair_unit, pair_ia, pair_ib, pair_a, pair_b : np.ndarray
        The within-unit ordered observation pairs (entries of the block-diagonal R^-1).
    """

    def __init__(self, design: Design):
        self.design = design
        N = design.n_obs
        p = design.p
        blocks = [design.X.tocsr()]
        offsets = []
        col = p
        for rd in design.random:
            pos = np.full(design.t, -1, dtype=np.int64)
            pos[rd.traits] = np.arange(rd.t)
            tpos = pos[design.obs_trait]
            rows = np.flatnonzero(tpos >= 0)
            cols = rd.level_of_unit[design.obs_unit[rows]] * rd.t + tpos[rows]
            blocks.append(sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(N, rd.q * rd.t)))
            offsets.append(col)
            col += rd.q * rd.t
        self.offsets = offsets
        self.n_eq = col
        W = sp.hstack(blocks, format="csr")
        W.sort_indices()
        self.W = W

        unit, ia, ib, a, b, swap = _ordered_unit_pairs(design.unit_start)
        self.pair_swap = swap
        self.pair_unit, self.pair_ia, self.pair_ib, self.pair_a, self.pair_b = unit, ia, ib, a, b
        self.d_indptr = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=N))]).astype(np.int64)

        # residual part: expand every pair over the nonzeros of W's rows a and b
        rp = W.indptr.astype(np.int64)
        ra = rp[a + 1] - rp[a]
        rb = rp[b + 1] - rp[b]
        cnt = ra * rb
        pair = np.repeat(np.arange(len(a)), cnt)
        first = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        k = np.arange(int(cnt.sum())) - np.repeat(first, cnt)
        rbp = rb[pair]
        ea = rp[a][pair] + k // rbp
        eb = rp[b][pair] + k % rbp
        del k, rbp, first
        c1 = W.indices[ea].astype(np.int64)
        c2 = W.indices[eb].astype(np.int64)
        val = W.data[ea] * W.data[eb]
        del ea, eb
        low = c1 >= c2
        P = self.n_eq
        key_r = c2[low] * P + c1[low]
        pair_r = pair[low]
        val_r = val[low]
        diag_r = (c1 == c2)[low]
        del c1, c2, val, low, pair

        # random parts: K^-1 (x) G^-1, entries (off + a t + r, off + b t + s)
        gparts = []
        for rd, off in zip(design.random, offsets):
            K = sp.coo_matrix(rd.kinv)
            t = rd.t
            r, s = np.divmod(np.arange(t * t), t)
            ka = np.repeat(K.row.astype(np.int64), t * t)
            kb = np.repeat(K.col.astype(np.int64), t * t)
            kv = np.repeat(K.data, t * t)
            rr = np.tile(r, K.nnz)
            ss = np.tile(s, K.nnz)
            row = off + ka * t + rr
            colg = off + kb * t + ss
            low = row >= colg
            gparts.append((colg[low] * P + row[low], kv[low], (rr * t + ss)[low],
                           ((ka == kb) & (rr == ss))[low]))

        keys = np.unique(np.concatenate([key_r] + [g[0] for g in gparts]))
        self.indices = (keys % P).astype(np.int32)
        colcount = np.bincount(keys // P, minlength=P)
        self.indptr = np.concatenate([[0], np.cumsum(colcount)]).astype(np.int32)
        nnz = len(keys)
        self.nnz = nnz
        self.rows = self.indices.astype(np.int64)
        self.cols = np.repeat(np.arange(P, dtype=np.int64), colcount)

        posr = np.searchsorted(keys, key_r)
        npair = len(a)
        self.M_R = sp.csr_matrix((val_r, (posr, pair_r)), shape=(nnz, npair))
        self.M_Rdiag = sp.csr_matrix((val_r[diag_r], (posr[diag_r], pair_r[diag_r])), shape=(nnz, npair))
        self.M_G = []
        self.G_diag = []   # positions of the (a == b, r == s) entries, for the trace of the symmetric sum
        for (key_g, kv, rs, dg), rd in zip(gparts, design.random):
            posg = np.searchsorted(keys, key_g)
            self.M_G.append(sp.csr_matrix((kv, (posg, rs)), shape=(nnz, rd.t * rd.t)))
            self.G_diag.append(sp.csr_matrix((kv[dg], (posg[dg], rs[dg])), shape=(nnz, rd.t * rd.t)))

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

    def term_trace(self, k: int, cinv: np.ndarray) -> np.ndarray:
        """sum_ab K^-1_ab C^{k a, k b} (t x t) for random term k."""
        t = self.design.random[k].t
        T = (self.M_G[k].T @ cinv).reshape(t, t)
        Dg = (self.G_diag[k].T @ cinv).reshape(t, t)
        return T + T.T - Dg
