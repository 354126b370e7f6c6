# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""B' C^-1 B = (L^-1 P B)'(L^-1 P B) for a block B of sparse columns, on CHOLMOD's supernodal
factor (L L' = P C P'), with only the supernodes each column reaches.

The AI matrix of the factor formulation (mvreml.fa_ai) needs B' C^-1 B for one column per
variance parameter (247 on a 50-site MET), where most columns are nonzero on a few blocks of
equations only (one site's). A forward solve L^-1 P b is nonzero only on the supernodes
reachable from b's nonzero rows in the supernodal elimination tree, and the Gram product of
two such solves only where their reaches meet; a full solve pair with every column costs
2 nnz(L) per column and touches all of L. Here the columns are ordered (by the caller) so that
the columns reaching a supernode form a short range [lo, hi): supernode j (columns
super[j]:super[j+1] of L, w of them; rows s[pi[j]:pi[j+1]], nsrow = w + m; values x[px[j]:],
nsrow x w column-major: L_D over the top w x w, L_B below) does

    Y_J = L_D^-1 Y_J                    (trsm over rows J, columns lo:hi)
    Y_R -= L_B Y_J                      (gemm, scattered into the rows R below J)
    G[lo:hi, lo:hi] += Y_J' Y_J         (syrk, lower triangle)

in the order of the supernodes (children before parents). The structure must have passed
mvreml._core.supinv.check_structure. Checked against a dense Cholesky in tests/test_fgram.py.
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport dtrsm, dgemm, dsyrk


def column_ranges(const int64_t[::1] sup, const int64_t[::1] pi, const int64_t[::1] s,
                  const int64_t[::1] pinv, const int64_t[::1] b_indptr, const int64_t[::1] b_indices,
                  int64_t[::1] lo, int64_t[::1] hi):
    """For every supernode, the range [lo, hi) of the columns of B (CSC, rows in C's order)
    whose forward solve reaches it (hi <= lo: none), closed upward: a parent's range holds its
    children's. lo, hi: length nsuper, caller-owned."""
    cdef Py_ssize_t ns = sup.shape[0] - 1, n = pinv.shape[0], m = b_indptr.shape[0] - 1
    cdef Py_ssize_t j, t, c, e, r, w, par
    if lo.shape[0] != ns or hi.shape[0] != ns or sup[ns] != n:
        raise ValueError("column_ranges: lo / hi must have one entry per supernode, pinv one per column of L")
    if b_indptr[0] != 0 or b_indptr[m] > b_indices.shape[0]:
        raise ValueError("column_ranges: B's column pointers do not fit its row indices")
    for e in range(b_indptr[m]):
        if b_indices[e] < 0 or b_indices[e] >= n:
            raise ValueError(f"column_ranges: row {b_indices[e]} of B outside 0..{n - 1}")
    cdef Py_ssize_t *col2super = <Py_ssize_t*> malloc(max(n, 1) * sizeof(Py_ssize_t))
    if col2super == NULL:
        raise MemoryError("column_ranges: no memory for the column map")
    with nogil:
        for j in range(ns):
            lo[j] = m
            hi[j] = 0
            for t in range(sup[j], sup[j + 1]):
                col2super[t] = j
        for c in range(m):
            for e in range(b_indptr[c], b_indptr[c + 1]):
                r = pinv[b_indices[e]]
                j = col2super[r]
                if c < lo[j]:
                    lo[j] = c
                if c + 1 > hi[j]:
                    hi[j] = c + 1
        for j in range(ns):
            w = sup[j + 1] - sup[j]
            if pi[j + 1] - pi[j] > w and hi[j] > lo[j]:
                par = col2super[s[pi[j] + w]]
                if lo[j] < lo[par]:
                    lo[par] = lo[j]
                if hi[j] > hi[par]:
                    hi[par] = hi[j]
    free(col2super)


def forward_gram(const int64_t[::1] sup, const int64_t[::1] pi, const int64_t[::1] px,
                 const int64_t[::1] s, const double[::1] x, double[::1, :] Y,
                 const int64_t[::1] lo, const int64_t[::1] hi, double[::1, :] G):
    """Y <- L^-1 Y on the column ranges [lo[j], hi[j]) of every supernode j, and G += Y'Y
    (lower triangle). Y: n x m (rows in L's order), zero outside the ranges (column_ranges
    makes them so for B's pattern); G: m x m. Returns the flops spent."""
    cdef Py_ssize_t ns = sup.shape[0] - 1, n = Y.shape[0], m = Y.shape[1]
    cdef Py_ssize_t j, w, nsrow, nb, c0, nc, a, c, maxb = 0, r
    cdef int iw, inc, inb, ild, ildx, im
    cdef double one = 1.0, zero = 0.0, flops = 0.0
    cdef double *E
    cdef double *Yj
    cdef const double *Lj
    cdef double *col
    if sup[ns] != n or G.shape[0] != m or G.shape[1] != m:
        raise ValueError(f"forward_gram: Y has {n} rows for a factor of {sup[ns]}, G is "
                         f"{G.shape[0]} x {G.shape[1]} for {m} columns")
    if lo.shape[0] != ns or hi.shape[0] != ns:
        raise ValueError("forward_gram: lo / hi must have one entry per supernode")
    for j in range(ns):
        if hi[j] > lo[j] and (lo[j] < 0 or hi[j] > m):
            raise ValueError(f"forward_gram: column range [{lo[j]}, {hi[j]}) of supernode {j} outside 0..{m}")
        if hi[j] > lo[j]:
            nb = pi[j + 1] - pi[j] - (sup[j + 1] - sup[j])
            if nb * (hi[j] - lo[j]) > maxb:
                maxb = nb * (hi[j] - lo[j])
        if px[j] + (pi[j + 1] - pi[j]) * (sup[j + 1] - sup[j]) > x.shape[0]:
            raise ValueError(f"forward_gram: supernode {j} lies outside the factor's values")
    if m == 0 or n == 0:
        return 0.0
    E = <double*> malloc(max(maxb, 1) * sizeof(double))
    if E == NULL:
        raise MemoryError("forward_gram: no memory for the update block")
    ild = <int> n
    im = <int> m
    with nogil:
        for j in range(ns):
            if hi[j] <= lo[j]:
                continue
            w = sup[j + 1] - sup[j]
            nsrow = pi[j + 1] - pi[j]
            nb = nsrow - w
            c0 = lo[j]
            nc = hi[j] - c0
            iw, inc, inb, ildx = <int> w, <int> nc, <int> nb, <int> nsrow
            Lj = &x[px[j]]
            Yj = &Y[sup[j], c0]
            dtrsm("L", "L", "N", "N", &iw, &inc, &one, <double*> Lj, &ildx, Yj, &ild)
            if nb > 0:
                dgemm("N", "N", &inb, &inc, &iw, &one, <double*> (Lj + w), &ildx, Yj, &ild,
                      &zero, E, &inb)
                for c in range(nc):
                    col = &Y[0, c0 + c]
                    for a in range(nb):
                        r = s[pi[j] + w + a]
                        col[r] -= E[a + c * nb]
            dsyrk("L", "T", &inc, &iw, &one, Yj, &ild, &one, &G[c0, c0], &im)
            flops += <double> nc * (w * w + 2.0 * nb * w + w * (nc + 1.0))
    free(E)
    return flops
