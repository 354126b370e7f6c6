# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Selected inverse of a sparse SPD matrix from its Cholesky factor (Takahashi / Erisman-Tinney).

The factor L (L L' = P C P') arrives as CSC, lower, row indices sorted, diagonal first in
each column, as scikit-sparse's ``Factor.L()`` returns it. Z = (L L')^-1 is computed on the
pattern of L only, supernode by supernode from the last to the first:

    Y    = L_B L_D^-1                     (trsm)
    Z_RJ = -Z_RR Y                        (symm; Z_RR gathered from later columns)
    Z_JJ = (L_D L_D')^-1 - Y' Z_RJ        (potri + gemm)

where J are the columns of the supernode, R its below-diagonal rows, L_D the diagonal
block and L_B the rows R of the supernode. A supernode of width one is the scalar
recursion of docs/THEORY.md; wide supernodes turn the inner sums into BLAS-3 products, so the
cost is that of the numeric factorization (sum_j |L_:j|^2 flops).
"""
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport dtrsm, dsymm, dgemm
from scipy.linalg.cython_lapack cimport dpotri

ctypedef fused index_t:
    int32_t
    int64_t


def supernode_partition(const index_t[::1] indptr, const index_t[::1] indices,
                        int64_t[::1] super_ptr):
    """Group consecutive columns with nested identical patterns into supernodes.

    Column j+1 joins the supernode of column j when pattern(L_:j+1) = pattern(L_:j) minus
    {j}. CHOLMOD's relaxed supernodes survive the conversion to simplicial form (their
    explicit zeros are kept), so they are recovered here. ``super_ptr`` (length n+1,
    caller-owned) receives the first column of each supernode; returns their number.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t j, q, pj, pn, cj, cn, ns = 0
    cdef bint join
    with nogil:
        super_ptr[0] = 0
        for j in range(n - 1):
            pj = indptr[j]
            pn = indptr[j + 1]
            cj = pn - pj
            cn = indptr[j + 2] - pn
            join = cj == cn + 1 and cj >= 2 and indices[pj + 1] == j + 1
            if join:
                for q in range(cn):
                    if indices[pj + 1 + q] != indices[pn + q]:
                        join = False
                        break
            if not join:
                ns += 1
                super_ptr[ns] = j + 1
        if n > 0:
            ns += 1
            super_ptr[ns] = n
    return ns


cdef inline Py_ssize_t _lower_bound(const index_t* arr, Py_ssize_t lo, Py_ssize_t n,
                                    Py_ssize_t t) noexcept nogil:
    """First index >= lo with arr[index] >= t (galloping, then bisection)."""
    cdef Py_ssize_t hi = lo, step = 1, mid
    # Gallop: O(log distance) when the targets are sparse in arr, O(1) when dense.
    while hi < n and arr[hi] < t:
        lo = hi + 1
        hi = lo + step
        step *= 2
    if hi > n:
        hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


def pair_positions(const index_t[::1] indptr, const index_t[::1] indices,
                   const int64_t[::1] prow, const int64_t[::1] pcol, int64_t[::1] out):
    """Position in the data array of each (row, col) pair (permuted coordinates), -1 if absent.

    The pattern is lower-triangular, so each pair is swapped to row >= col first. Pairs
    must lie in [0, n) (validated by the caller).
    """
    cdef Py_ssize_t q, i, j, t, lo, hi
    cdef Py_ssize_t npair = prow.shape[0]
    with nogil:
        for q in range(npair):
            i = prow[q]
            j = pcol[q]
            if i < j:
                t = i
                i = j
                j = t
            lo = indptr[j]
            hi = indptr[j + 1]
            lo = _lower_bound(&indices[0], lo, hi, i)
            if lo < hi and indices[lo] == i:
                out[q] = lo
            else:
                out[q] = -1


def selinv_supernodal(const index_t[::1] indptr, const index_t[::1] indices,
                      const double[::1] Lx, const int64_t[::1] super_ptr,
                      double[::1] Zx, int64_t[::1] info):
    """Fill Zx (pattern of L) with the entries of (L L')^-1 on the pattern of L.

    Parameters
    ----------
    indptr, indices, Lx : the factor in CSC (lower, sorted, diagonal first).
    super_ptr : first column of each supernode and n, from ``supernode_partition`` or any
        refinement of it (all widths one gives the scalar recursion). Not checked here:
        the wrapper always builds it with ``supernode_partition``.
    Zx : output, same length as Lx.
    info : output, length 2: (0, 0) on success; (1, j) when the pattern is not closed
        under elimination at column j (not a Cholesky pattern); (2, j) when the diagonal
        block holding column j is singular; (3, 0) when workspace allocation failed.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t nsuper = super_ptr.shape[0] - 1
    cdef Py_ssize_t s, K, t, a, b, bb, e, c0, c1, k0, k1, p0, pt, base, off, lo, mK
    cdef Py_ssize_t maxw = 0, maxm = 0, maxmw = 0, mm, ww
    cdef int w, m, lapinfo = 0
    cdef double one = 1.0, mone = -1.0, zero = 0.0
    cdef char cR = b'R', cL = b'L', cN = b'N', cT = b'T'
    cdef double *Ld = NULL
    cdef double *Y = NULL
    cdef double *Zrr = NULL
    cdef double *Zrj = NULL
    cdef Py_ssize_t *rel = NULL
    cdef Py_ssize_t *col2super = NULL
    cdef const index_t *R
    cdef const index_t *RK

    info[0] = 0
    info[1] = 0
    if n == 0:
        return
    with nogil:
        for s in range(nsuper):
            ww = super_ptr[s + 1] - super_ptr[s]
            mm = indptr[super_ptr[s] + 1] - indptr[super_ptr[s]] - ww
            if ww > maxw:
                maxw = ww
            if mm > maxm:
                maxm = mm
            if mm * ww > maxmw:
                maxmw = mm * ww
        Ld = <double*> malloc(max(maxw * maxw, 1) * sizeof(double))
        Y = <double*> malloc(max(maxmw, 1) * sizeof(double))
        Zrj = <double*> malloc(max(maxmw, 1) * sizeof(double))
        Zrr = <double*> malloc(max(maxm * maxm, 1) * sizeof(double))
        rel = <Py_ssize_t*> malloc(max(maxm, 1) * sizeof(Py_ssize_t))
        col2super = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        if Ld == NULL or Y == NULL or Zrj == NULL or Zrr == NULL or rel == NULL \
                or col2super == NULL:
            info[0] = 3
        else:
            for s in range(nsuper):
                for t in range(super_ptr[s], super_ptr[s + 1]):
                    col2super[t] = s

            for s in range(nsuper - 1, -1, -1):
                c0 = super_ptr[s]
                c1 = super_ptr[s + 1]
                w = <int> (c1 - c0)
                p0 = indptr[c0]
                m = <int> (indptr[c0 + 1] - p0 - w)
                R = &indices[p0 + w]
                # Unpack the supernode: L_D (w x w lower) and L_B (m x w), column-major.
                for t in range(w):
                    pt = indptr[c0 + t]
                    for a in range(w - t):
                        Ld[t + a + t * w] = Lx[pt + a]
                    for a in range(m):
                        Y[a + t * m] = Lx[pt + (w - t) + a]
                if m > 0:
                    dtrsm(&cR, &cL, &cN, &cN, &m, &w, &one, Ld, &w, Y, &m)
                    # Gather the lower triangle of Z_RR from the columns already done. The
                    # rows R fall in runs, one per later supernode K; inside K's columns
                    # rows are contiguous, beyond them they are K's below rows, located
                    # once per run (relative indices shared by all columns of the run).
                    b = 0
                    while b < m:
                        K = col2super[R[b]]
                        k0 = super_ptr[K]
                        k1 = super_ptr[K + 1]
                        e = b + 1
                        while e < m and R[e] < k1:
                            e += 1
                        base = indptr[k0] + (k1 - k0)
                        RK = &indices[base]
                        mK = indptr[k0 + 1] - base
                        lo = 0
                        for a in range(e, m):
                            lo = _lower_bound(RK, lo, mK, R[a])
                            if lo >= mK or RK[lo] != R[a]:
                                info[0] = 1
                                info[1] = c0
                                break
                            rel[a] = lo
                            lo += 1
                        if info[0] != 0:
                            break
                        for bb in range(b, e):
                            base = indptr[R[bb]]
                            for a in range(bb, e):
                                Zrr[a + bb * m] = Zx[base + (R[a] - R[bb])]
                            off = base + (k1 - R[bb])
                            for a in range(e, m):
                                Zrr[a + bb * m] = Zx[off + rel[a]]
                        b = e
                    if info[0] != 0:
                        break
                    dsymm(&cL, &cL, &m, &w, &mone, Zrr, &m, Y, &m, &zero, Zrj, &m)
                dpotri(&cL, &w, Ld, &w, &lapinfo)
                if lapinfo != 0:
                    info[0] = 2
                    info[1] = c0 + (lapinfo - 1 if lapinfo > 0 else 0)
                    break
                if m > 0:
                    dgemm(&cT, &cN, &w, &w, &m, &mone, Y, &m, Zrj, &m, &one, Ld, &w)
                for t in range(w):
                    pt = indptr[c0 + t]
                    for a in range(w - t):
                        Zx[pt + a] = Ld[t + a + t * w]
                    for a in range(m):
                        Zx[pt + (w - t) + a] = Zrj[a + t * m]
        free(Ld)
        free(Y)
        free(Zrj)
        free(Zrr)
        free(rel)
        free(col2super)
