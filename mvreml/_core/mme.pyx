# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Kernels that build the fixed pattern of the mixed-model equations and the maps that fill it.

C = W'R^-1 W + blockdiag(0, K_k^-1 (x) G_k^-1) is stored as its lower triangle in CSC form.
Its pattern is the union, over the nonzero pairs (a, b) of R^-1, of every pair of columns
that rows a and b of W touch (one clique per unit when R is block-diagonal over units) and, for each random term, the pattern of
K^-1 with every level expanded to a dense t x t block. The maps record, for each stored
product W[a, c1] W[b, c2] (within-unit pair a, b) and each K^-1 entry times a G^-1 entry,
the position in C's data array where it lands; assembling C is then a sparse product.

Conventions: W and K^-1 come as CSR/CSC with sorted int64 indices; C's pattern indices and
the positions written into the maps share one fused integer type (int32 while it fits, the
caller decides). Every function has a counting pass (``fill`` false: per-row or per-column
counts written at ``ptr[i + 1]``) and a filling pass (``fill`` true: ``ptr`` is the prefix
sum of the counts). Inputs are validated by the Python wrapper (mvreml.mme).
"""
from libc.stdint cimport int32_t, int64_t

ctypedef int64_t i64

ctypedef fused idx_t:
    int32_t
    int64_t


cdef inline i64 _find(const idx_t* arr, i64 lo, i64 hi, i64 target) noexcept nogil:
    """Position of `target` in the sorted arr[lo:hi], or -1."""
    cdef i64 mid, end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and arr[lo] == target:
        return lo
    return -1


def lower_rows(const i64[::1] w_indptr, const i64[::1] w_indices,
               const i64[::1] wc_indptr, const i64[::1] wc_indices,
               const i64[::1] nb_ptr, const i64[::1] nb_idx,
               const i64[::1] term_first, const i64[::1] term_t, const i64[::1] term_kptr,
               const i64[::1] k_indptr, const i64[::1] k_indices,
               i64[::1] col_mark, i64[::1] row_mark, i64[::1] row_ptr, idx_t[::1] cols,
               bint fill):
    """Lower pattern of C row by row (columns j <= i of row i, unsorted).

    Parameters
    ----------
    w_indptr, w_indices : W as CSR (N x P), sorted column indices.
    wc_indptr, wc_indices : W as CSC (the rows of each column).
    nb_ptr, nb_idx : the pattern of R^-1 over the rows of W (CSR, diagonal included): the
        rows of a unit for a block-diagonal residual, the lattice neighbours of a plot for a
        spatial one.
    term_first : first equation of each random term, then P (n_terms + 1).
    term_t : number of traits of each term.
    term_kptr : where each term's K^-1 indptr starts inside ``k_indptr``.
    k_indptr, k_indices : the terms' K^-1 patterns (CSC, symmetric), concatenated; the
        indptr values are absolute positions in ``k_indices``.
    col_mark (P), row_mark (N) : scratch, filled with -1 by the caller.
    row_ptr : (P + 1) counts at [i + 1] (counting pass) or offsets (filling pass).
    cols : output column indices (filling pass; ignored when counting).
    """
    cdef i64 P = col_mark.shape[0]
    cdef i64 n_terms = term_t.shape[0]
    cdef i64 i, e, r0, qq, rr, f, j, n, k, off, t, a, b, kp, s, base
    with nogil:
        k = -1
        for i in range(P):
            n = 0
            for e in range(wc_indptr[i], wc_indptr[i + 1]):
                r0 = wc_indices[e]
                for qq in range(nb_ptr[r0], nb_ptr[r0 + 1]):
                    rr = nb_idx[qq]
                    if row_mark[rr] == i:
                        continue
                    row_mark[rr] = i
                    for f in range(w_indptr[rr], w_indptr[rr + 1]):
                        j = w_indices[f]
                        if j <= i and col_mark[j] != i:
                            col_mark[j] = i
                            if fill:
                                cols[row_ptr[i] + n] = <idx_t> j
                            n += 1
            # the random term holding equation i (terms are contiguous and increasing)
            while k + 1 < n_terms and i >= term_first[k + 1]:
                k += 1
            if k >= 0 and i < term_first[k + 1]:
                off = term_first[k]
                t = term_t[k]
                a = (i - off) // t
                kp = term_kptr[k] + a
                for e in range(k_indptr[kp], k_indptr[kp + 1]):
                    b = k_indices[e]
                    base = off + b * t
                    if base > i:
                        continue
                    for s in range(t):
                        j = base + s
                        if j <= i and col_mark[j] != i:
                            col_mark[j] = i
                            if fill:
                                cols[row_ptr[i] + n] = <idx_t> j
                            n += 1
            if not fill:
                row_ptr[i + 1] = n


def transpose_pattern(const i64[::1] row_ptr, const idx_t[::1] cols, i64[::1] col_ptr,
                      idx_t[::1] rows):
    """CSR pattern -> CSC pattern of the same matrix; rows come out sorted in each column.

    ``col_ptr`` (n_cols + 1) must be zero on entry; ``rows`` has the length of ``cols``.
    """
    cdef i64 n_rows = row_ptr.shape[0] - 1
    cdef i64 n_cols = col_ptr.shape[0] - 1
    cdef i64 i, e, j
    with nogil:
        for e in range(row_ptr[n_rows]):
            col_ptr[cols[e] + 1] += 1
        for j in range(n_cols):
            col_ptr[j + 1] += col_ptr[j]
        for i in range(n_rows):
            for e in range(row_ptr[i], row_ptr[i + 1]):
                j = cols[e]
                rows[col_ptr[j]] = <idx_t> i
                col_ptr[j] += 1
        for j in range(n_cols, 0, -1):
            col_ptr[j] = col_ptr[j - 1]
        col_ptr[0] = 0


def residual_map(const i64[::1] w_indptr, const i64[::1] w_indices, const double[::1] w_data,
                 const i64[::1] pair_a, const i64[::1] pair_b,
                 const i64[::1] c_indptr, const idx_t[::1] c_indices,
                 i64[::1] m_ptr, idx_t[::1] m_pos, double[::1] m_val,
                 i64[::1] d_ptr, idx_t[::1] d_pos, double[::1] d_val, bint fill):
    """Map of W'R^-1 W into C: one column per within-unit pair (a, b).

    For every stored W[a, c1], W[b, c2] with c1 >= c2, the position of (c1, c2) in C and
    the product W[a, c1] W[b, c2] (``m_*``); the entries with c1 == c2 again in ``d_*``.
    Returns the number of products whose position is missing from C (0 unless the pattern
    is not that of these rows).
    """
    cdef i64 npair = pair_a.shape[0]
    cdef i64 q, ea, eb, c1, c2, lo, hi, pos, nm, nd, missing = 0
    cdef const idx_t* ci = &c_indices[0]
    with nogil:
        for q in range(npair):
            nm = 0
            nd = 0
            for eb in range(w_indptr[pair_b[q]], w_indptr[pair_b[q] + 1]):
                c2 = w_indices[eb]
                lo = c_indptr[c2]
                hi = c_indptr[c2 + 1]
                for ea in range(w_indptr[pair_a[q]], w_indptr[pair_a[q] + 1]):
                    c1 = w_indices[ea]
                    if c1 < c2:
                        continue
                    if fill:
                        pos = _find(ci, lo, hi, c1)
                        if pos < 0:
                            missing += 1
                            pos = 0
                        else:
                            lo = pos + 1
                        m_pos[m_ptr[q] + nm] = <idx_t> pos
                        m_val[m_ptr[q] + nm] = w_data[ea] * w_data[eb]
                        if c1 == c2:
                            d_pos[d_ptr[q] + nd] = <idx_t> pos
                            d_val[d_ptr[q] + nd] = w_data[ea] * w_data[eb]
                    nm += 1
                    if c1 == c2:
                        nd += 1
            if not fill:
                m_ptr[q + 1] = nm
                d_ptr[q + 1] = nd
    return missing


def term_map(const i64[::1] k_indptr, const i64[::1] k_indices, const double[::1] k_data,
             i64 off, i64 t, const i64[::1] c_indptr, const idx_t[::1] c_indices,
             i64[::1] m_ptr, idx_t[::1] m_pos, double[::1] m_val,
             i64[::1] d_ptr, idx_t[::1] d_pos, double[::1] d_val, bint fill):
    """Map of K^-1 (x) G^-1 into C: one column per entry (r, s) of G^-1 (column r t + s).

    Entry (off + a t + r, off + b t + s) of the lower triangle receives K^-1[a, b] G^-1[r, s];
    ``m_*`` holds its position and K^-1[a, b], ``d_*`` the entries with a == b and r == s.
    K^-1 is CSC (symmetric, sorted rows). Returns the number of missing positions.
    """
    cdef i64 q = k_indptr.shape[0] - 1
    cdef i64 rs, r, s, b, e, a, row, col, lo, hi, pos, nm, nd, missing = 0
    cdef const idx_t* ci = &c_indices[0]
    with nogil:
        for rs in range(t * t):
            r = rs // t
            s = rs % t
            nm = 0
            nd = 0
            for b in range(q):
                col = off + b * t + s
                lo = c_indptr[col]
                hi = c_indptr[col + 1]
                for e in range(k_indptr[b], k_indptr[b + 1]):
                    a = k_indices[e]
                    row = off + a * t + r
                    if row < col:
                        continue
                    if fill:
                        pos = _find(ci, lo, hi, row)
                        if pos < 0:
                            missing += 1
                            pos = 0
                        else:
                            lo = pos + 1
                        m_pos[m_ptr[rs] + nm] = <idx_t> pos
                        m_val[m_ptr[rs] + nm] = k_data[e]
                        if a == b and r == s:
                            d_pos[d_ptr[rs] + nd] = <idx_t> pos
                            d_val[d_ptr[rs] + nd] = k_data[e]
                    nm += 1
                    if a == b and r == s:
                        nd += 1
            if not fill:
                m_ptr[rs + 1] = nm
                d_ptr[rs + 1] = nd
    return missing
