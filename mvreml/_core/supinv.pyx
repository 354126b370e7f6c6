# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Selected inverse on CHOLMOD's supernodal factor, in place (Takahashi, supernode by supernode).

CHOLMOD's supernodal LL' factor (L L' = P C P') is a list of dense blocks: supernode j holds
columns super[j]:super[j+1] (w of them), row indices s[pi[j]:pi[j+1]] (nsrow = w + m: the
columns themselves, then the m rows R below, ascending) and values x[px[j]:], an nsrow x w
column-major block: the lower triangle L_D of its top w x w part and L_B below. From the last
supernode to the first, with Z = (L L')^-1 already known on the pattern of the later ones:

    Y    = L_B L_D^-1                     (trsm, over L_B in place)
    Z_RJ = -Z_RR Y                        (symm; Z_RR gathered from later supernodes)
    Z_JJ = (L_D L_D')^-1 - Y' Z_RJ        (potri over L_D in place, gemm)

then Z_RJ is written over Y. Supernode j is read only at its own step, so Z overwrites L in x
as the recursion goes: the factor is consumed (mvreml._core.chol marks it so) and the cost
is that of one numeric factorization. The CSC kernel mvreml._core.selinv is the reference
this one is checked against (tests/test_selinv.py).
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport dtrsm, dsymm, dgemm
from scipy.linalg.cython_lapack cimport dpotri

cdef extern from "Python.h":
    # declared without Cython's exception check: the kernel looks at the flag itself, frees its
    # workspace and returns; the caller raises KeyboardInterrupt
    int _check_signals "PyErr_CheckSignals"()
    void _clear_error "PyErr_Clear"()

# flops of work between two looks at pending signals (Ctrl-C): ~0.05 s of BLAS work
cdef double SIGNAL_FLOPS = 2e8


cdef inline Py_ssize_t _lower_bound(const int64_t* arr, Py_ssize_t lo, Py_ssize_t n,
                                    int64_t t) noexcept nogil:
    """First index >= lo with arr[index] >= t (galloping, then bisection)."""
    cdef Py_ssize_t hi = lo, step = 1, mid
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


def check_structure(const int64_t[::1] sup, const int64_t[::1] pi, const int64_t[::1] px,
                    const int64_t[::1] s, Py_ssize_t n, Py_ssize_t xsize):
    """0 when (sup, pi, px, s) is a supernodal structure the kernels can walk, else a code:
    1 columns not a partition of 0..n, 2 a supernode's rows not its columns then ascending rows
    below n, 3 a block outside x. Run once per pattern, before any nogil kernel."""
    cdef Py_ssize_t ns = sup.shape[0] - 1, j, a, w, nsrow, p0, code = 0
    if ns < 0 or pi.shape[0] != ns + 1 or px.shape[0] != ns + 1:
        return 1
    if ns == 0:
        return 0 if n == 0 else 1
    if sup[0] != 0 or sup[ns] != n or pi[0] != 0 or pi[ns] > s.shape[0]:
        return 1
    with nogil:
        for j in range(ns):
            w = sup[j + 1] - sup[j]
            nsrow = pi[j + 1] - pi[j]
            if w < 1 or nsrow < w:
                code = 1
                break
            p0 = pi[j]
            for a in range(w):
                if s[p0 + a] != sup[j] + a:
                    code = 2
                    break
            if code:
                break
            for a in range(w, nsrow):
                if s[p0 + a] <= s[p0 + a - 1] or s[p0 + a] >= n:
                    code = 2
                    break
            if code:
                break
            if px[j] < 0 or px[j] + nsrow * w > xsize or (j + 1 < ns and px[j + 1] < px[j] + nsrow * w):
                code = 3
                break
    return code


def pair_positions(const int64_t[::1] sup, const int64_t[::1] pi, const int64_t[::1] px,
                   const int64_t[::1] s, const int64_t[::1] prow, const int64_t[::1] pcol,
                   int64_t[::1] out):
    """Position in x of each (row, col) pair (permuted coordinates, either triangle), -1 if
    the pair is outside the pattern of L. Pairs must lie in [0, n) (checked by the caller)."""
    cdef Py_ssize_t ns = sup.shape[0] - 1, n = sup[ns], q, i, j, t, K, w, nsrow, lo, hi
    cdef Py_ssize_t *col2super = <Py_ssize_t*> malloc(max(n, 1) * sizeof(Py_ssize_t))
    if col2super == NULL:
        raise MemoryError("pair positions: no memory for the column map")
    with nogil:
        for K in range(ns):
            for t in range(sup[K], sup[K + 1]):
                col2super[t] = K
        for q in range(prow.shape[0]):
            i = prow[q]
            j = pcol[q]
            if i < j:
                t = i
                i = j
                j = t
            K = col2super[j]
            w = sup[K + 1] - sup[K]
            nsrow = pi[K + 1] - pi[K]
            if i < sup[K + 1]:
                out[q] = px[K] + (j - sup[K]) * nsrow + (i - sup[K])
            else:
                lo = pi[K] + w
                hi = pi[K + 1]
                lo = _lower_bound(&s[0], lo, hi, i)
                if lo < hi and s[lo] == i:
                    out[q] = px[K] + (j - sup[K]) * nsrow + (lo - pi[K])
                else:
                    out[q] = -1
    free(col2super)


# A supernode whose products stay below this many flops is done by the loops below, not BLAS:
# a BLAS call costs more than such a product (call overhead), and a threaded BLAS on a loaded
# machine makes every tiny call wait for its threads (the 30-50x collapse of issue 16).
DEF SMALL_FLOPS = 32768


cdef int _small_supernode(double *X, int ns, int w, int m, const double *Zrr, double *Zrj,
                          double *W) noexcept nogil:
    """The three steps of the recursion by plain loops (0 on success, 1 + t on a zero pivot t).

    X: the supernode (ns = w + m rows, column-major), L_D over its top w x w, L_B below; Zrr:
    the lower triangle of Z_RR (m x m); Zrj (m x w) and W (w x w) workspace.
    """
    cdef int t, u, a, b, i, k
    cdef double d, l, y, z
    cdef double *Yt
    cdef double *Yu
    for t in range(w):
        d = X[t + t * ns]
        if not (d > 0.0) or d != d or d - d != 0.0:
            return 1 + t
    # Y = L_B L_D^-1 over L_B: Y L_D = L_B, last column first
    for t in range(w - 1, -1, -1):
        Yt = X + w + t * ns
        for u in range(t + 1, w):
            l = X[u + t * ns]
            if l != 0.0:
                Yu = X + w + u * ns
                for a in range(m):
                    Yt[a] -= Yu[a] * l
        d = 1.0 / X[t + t * ns]
        for a in range(m):
            Yt[a] *= d
    # Z_RJ = -Z_RR Y (Z_RR symmetric, lower triangle stored)
    for t in range(w):
        Yt = X + w + t * ns
        for a in range(m):
            Zrj[a + t * m] = 0.0
        for b in range(m):
            y = Yt[b]
            Zrj[b + t * m] -= Zrr[b + b * m] * y
            for a in range(b + 1, m):
                z = Zrr[a + b * m]
                Zrj[a + t * m] -= z * y
                Zrj[b + t * m] -= z * Yt[a]
    # W = L_D^-1 (lower), then Z_JJ = W' W - Y' Z_RJ (lower) over L_D
    for k in range(w):
        W[k + k * w] = 1.0 / X[k + k * ns]
        for i in range(k + 1, w):
            z = 0.0
            for u in range(k, i):
                z += X[i + u * ns] * W[u + k * w]
            W[i + k * w] = -z / X[i + i * ns]
    for k in range(w):
        for i in range(k, w):
            z = 0.0
            for u in range(i, w):
                z += W[u + i * w] * W[u + k * w]
            Yt = X + w + i * ns
            for a in range(m):
                z -= Yt[a] * Zrj[a + k * m]
            X[i + k * ns] = z
    return 0



def selinv_inplace(const int64_t[::1] sup, const int64_t[::1] pi, const int64_t[::1] px,
                   const int64_t[::1] s, double[::1] x, int64_t[::1] info):
    """Overwrite x (a supernodal LL' factor) with (L L')^-1 on the pattern of L.

    The structure must have passed `check_structure`. info (length 2) receives (0, 0) on
    success; (1, j) when the pattern is not closed under elimination at column j (not a
    Cholesky pattern); (2, j) when the diagonal block holding column j is singular; (3, 0)
    when the workspace could not be allocated; (4, j) when a signal (Ctrl-C) arrived, looked
    at every SIGNAL_FLOPS of work. On a failure x is partly overwritten.
    """
    cdef Py_ssize_t ns = sup.shape[0] - 1
    cdef Py_ssize_t n = sup[ns] if ns >= 0 else 0
    cdef Py_ssize_t j, K, t, a, b, bb, e, k0, k1, p0, lo, mK, wK, nsK, colbase
    cdef Py_ssize_t maxm = 0, maxmw = 0, mm, ww
    cdef int w, m, nsrow, lapinfo = 0
    cdef double one = 1.0, mone = -1.0, zero = 0.0
    cdef char cR = b'R', cL = b'L', cN = b'N', cT = b'T'
    cdef double *X
    cdef double *Zrr = NULL
    cdef double *Zrj = NULL
    cdef double *Wk = NULL
    cdef Py_ssize_t maxw = 0
    cdef bint small
    cdef int bad
    cdef Py_ssize_t *rel = NULL
    cdef Py_ssize_t *col2super = NULL
    cdef const int64_t *R
    cdef const int64_t *RK
    cdef double since_check = 0.0

    info[0] = 0
    info[1] = 0
    if n == 0:
        return
    with nogil:
        for j in range(ns):
            ww = sup[j + 1] - sup[j]
            mm = pi[j + 1] - pi[j] - ww
            if mm > maxm:
                maxm = mm
            if mm * ww > maxmw:
                maxmw = mm * ww
            if ww > maxw:
                maxw = ww
        Wk = <double*> malloc(max(min(maxw, 64) ** 2, 1) * sizeof(double))
        Zrj = <double*> malloc(max(maxmw, 1) * sizeof(double))
        Zrr = <double*> malloc(max(maxm * maxm, 1) * sizeof(double))
        rel = <Py_ssize_t*> malloc(max(maxm, 1) * sizeof(Py_ssize_t))
        col2super = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        if Zrj == NULL or Zrr == NULL or rel == NULL or col2super == NULL or Wk == NULL:
            info[0] = 3
        else:
            for j in range(ns):
                for t in range(sup[j], sup[j + 1]):
                    col2super[t] = j
            for j in range(ns - 1, -1, -1):
                w = <int> (sup[j + 1] - sup[j])
                nsrow = <int> (pi[j + 1] - pi[j])
                m = nsrow - w
                X = &x[px[j]]
                R = &s[pi[j] + w]
                small = w <= 64 and (<double> m * m * w + <double> w * w * (m + w)) <= SMALL_FLOPS
                since_check += <double> m * m * w + <double> w * w * (m + w)
                if since_check > SIGNAL_FLOPS:
                    since_check = 0.0
                    with gil:
                        if _check_signals() != 0:
                            _clear_error()
                            info[0] = 4
                            info[1] = sup[j]
                    if info[0] != 0:
                        break
                if m > 0:
                    if not small:
                        # Y = L_B L_D^-1, over L_B (rows w.. of the block, leading dimension nsrow)
                        dtrsm(&cR, &cL, &cN, &cN, &m, &w, &one, X, &nsrow, X + w, &nsrow)
                    # Gather the lower triangle of Z_RR (m x m) from the later supernodes. The
                    # rows R fall in runs, one per later supernode K; inside K's columns the
                    # rows are K's diagonal block, beyond them K's rows below, located once
                    # per run (their relative positions serve every column of the run).
                    b = 0
                    while b < m:
                        K = col2super[R[b]]
                        k0 = sup[K]
                        k1 = sup[K + 1]
                        wK = k1 - k0
                        nsK = pi[K + 1] - pi[K]
                        e = b + 1
                        while e < m and R[e] < k1:
                            e += 1
                        RK = &s[pi[K] + wK]
                        mK = nsK - wK
                        lo = 0
                        for a in range(e, m):
                            lo = _lower_bound(RK, lo, mK, R[a])
                            if lo >= mK or RK[lo] != R[a]:
                                info[0] = 1
                                info[1] = sup[j]
                                break
                            rel[a] = lo
                            lo += 1
                        if info[0] != 0:
                            break
                        for bb in range(b, e):
                            colbase = px[K] + (R[bb] - k0) * nsK
                            for a in range(bb, e):
                                Zrr[a + bb * m] = x[colbase + (R[a] - k0)]
                            colbase = colbase + wK
                            for a in range(e, m):
                                Zrr[a + bb * m] = x[colbase + rel[a]]
                        b = e
                    if info[0] != 0:
                        break
                if small:
                    bad = _small_supernode(X, nsrow, w, m, Zrr, Zrj, Wk)
                    if bad:
                        info[0] = 2
                        info[1] = sup[j] + bad - 1
                        break
                else:
                    if m > 0:
                        dsymm(&cL, &cL, &m, &w, &mone, Zrr, &m, X + w, &nsrow, &zero, Zrj, &m)
                    dpotri(&cL, &w, X, &nsrow, &lapinfo)
                    if lapinfo != 0:
                        info[0] = 2
                        info[1] = sup[j] + (lapinfo - 1 if lapinfo > 0 else 0)
                        break
                    if m > 0:
                        dgemm(&cT, &cN, &w, &w, &m, &mone, X + w, &nsrow, Zrj, &m, &one, X, &nsrow)
                if m > 0:
                    for t in range(w):
                        for a in range(m):
                            X[w + a + t * nsrow] = Zrj[a + t * m]
        free(Wk)
        free(Zrj)
        free(Zrr)
        free(rel)
        free(col2super)
