# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Symbolic Cholesky analysis without a numeric factor: permuted pattern, elimination tree,
postorder, column counts of L and CHOLMOD's relaxed supernodes.

For ``mvreml.plan``: the size of the factor and the work of one numeric factorization are
known from the pattern of C and the fill-reducing permutation alone. Column counts follow
Gilbert, Ng & Peyton (1994) in the form of Davis, *Direct Methods for Sparse Linear
Systems* (2006), section 4.5: time O(nnz(C) alpha(n)), no pattern of L is ever formed. The
supernodal partition follows CHOLMOD's rules (fundamental supernodes, then relaxed
amalgamation with its default nrelax / zrelax), so the explicit zeros CHOLMOD stores can be
counted too.

Flat functions over typed memoryviews; every buffer is allocated and validated by the
caller (mvreml.symbolic). Indices of rows are int32 (the caller checks n < 2^31), pointers
int64.
"""
from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t


def permute_pattern(const index_t[::1] indptr, const index_t[::1] indices,
                    const int64_t[::1] pinv, int64_t[::1] up_ptr, int32_t[::1] up_idx,
                    int64_t[::1] lo_ptr, int32_t[::1] lo_idx, int64_t[::1] fill):
    """The strict upper and strict lower triangles of P C P' from the lower triangle of C.

    ``indptr``/``indices``: CSC of the lower triangle of C (entries above the diagonal are
    taken as their mirror, the diagonal is dropped). ``pinv[i]``: the new position of row i.
    Outputs (caller-owned): ``up_ptr`` (n + 1) / ``up_idx`` (nnz) the upper triangle by
    columns (column k: rows i < k), ``lo_ptr`` / ``lo_idx`` the lower triangle by columns
    (column j: rows i > j); rows unsorted. ``fill``: n scratch. Returns the number of
    off-diagonal entries.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t c, p, a, b, lo, hi, k
    cdef int64_t m = 0
    with nogil:
        for k in range(n + 1):
            up_ptr[k] = 0
            lo_ptr[k] = 0
        for c in range(n):
            for p in range(indptr[c], indptr[c + 1]):
                a = pinv[indices[p]]
                b = pinv[c]
                if a == b:
                    continue
                lo = a if a < b else b
                hi = b if a < b else a
                up_ptr[hi + 1] += 1
                lo_ptr[lo + 1] += 1
                m += 1
        for k in range(n):
            up_ptr[k + 1] += up_ptr[k]
            lo_ptr[k + 1] += lo_ptr[k]
        for k in range(n):
            fill[k] = up_ptr[k]
        for c in range(n):
            for p in range(indptr[c], indptr[c + 1]):
                a = pinv[indices[p]]
                b = pinv[c]
                if a == b:
                    continue
                lo = a if a < b else b
                hi = b if a < b else a
                up_idx[fill[hi]] = <int32_t>lo
                fill[hi] += 1
        for k in range(n):
            fill[k] = lo_ptr[k]
        for c in range(n):
            for p in range(indptr[c], indptr[c + 1]):
                a = pinv[indices[p]]
                b = pinv[c]
                if a == b:
                    continue
                lo = a if a < b else b
                hi = b if a < b else a
                lo_idx[fill[lo]] = <int32_t>hi
                fill[lo] += 1
    return m


def etree(const int64_t[::1] up_ptr, const int32_t[::1] up_idx, int64_t[::1] parent,
          int64_t[::1] ancestor):
    """Elimination tree of a symmetric matrix from its strict upper triangle by columns
    (Liu's algorithm with path compression). ``parent[j]`` = -1 for a root; ``ancestor``:
    n scratch."""
    cdef Py_ssize_t n = up_ptr.shape[0] - 1
    cdef Py_ssize_t k, p
    cdef int64_t i, inext
    with nogil:
        for k in range(n):
            parent[k] = -1
            ancestor[k] = -1
            for p in range(up_ptr[k], up_ptr[k + 1]):
                i = up_idx[p]
                while i != -1 and i < k:
                    inext = ancestor[i]
                    ancestor[i] = k
                    if inext == -1:
                        parent[i] = k
                    i = inext


def postorder(const int64_t[::1] parent, int64_t[::1] post, int64_t[::1] head,
              int64_t[::1] nxt, int64_t[::1] stack):
    """Postorder of a forest (children in increasing order): ``post[k]`` is the k-th node.
    ``head``, ``nxt``, ``stack``: n scratch each."""
    cdef Py_ssize_t n = parent.shape[0]
    cdef Py_ssize_t j, k = 0, top
    cdef int64_t p, i
    with nogil:
        for j in range(n):
            head[j] = -1
        for j in range(n - 1, -1, -1):
            if parent[j] != -1:
                nxt[j] = head[parent[j]]
                head[parent[j]] = j
        for j in range(n):
            if parent[j] != -1:
                continue
            top = 0
            stack[0] = j
            while top >= 0:
                p = stack[top]
                i = head[p]
                if i == -1:
                    top -= 1
                    post[k] = p
                    k += 1
                else:
                    head[p] = nxt[i]
                    top += 1
                    stack[top] = i
    return k


def column_counts(const int64_t[::1] lo_ptr, const int32_t[::1] lo_idx,
                  const int64_t[::1] parent, const int64_t[::1] post, int64_t[::1] count,
                  int64_t[::1] work):
    """Entries of every column of L (diagonal included) without forming L.

    Gilbert-Ng-Peyton: column j of L is the union of the row subtrees that contain j; a
    row subtree is counted at its leaves (first descendants in postorder, found by the
    skeleton test) minus the overlaps at least common ancestors (a disjoint-set forest
    with path compression). ``lo_ptr``/``lo_idx``: strict lower triangle by columns;
    ``parent`` the elimination tree, ``post`` its postorder; ``count`` (n) the result;
    ``work``: 4 n scratch.
    """
    cdef Py_ssize_t n = parent.shape[0]
    cdef Py_ssize_t k, p
    cdef int64_t i, j, q, s, sp, jprev
    cdef int64_t* ancestor = &work[0]
    cdef int64_t* maxfirst = &work[n]
    cdef int64_t* prevleaf = &work[2 * n]
    cdef int64_t* first = &work[3 * n]
    with nogil:
        for k in range(4 * n):
            work[k] = -1
        for k in range(n):
            j = post[k]
            count[j] = 1 if first[j] == -1 else 0      # 1 for a leaf of the tree
            while j != -1 and first[j] == -1:
                first[j] = k
                j = parent[j]
        for k in range(n):
            ancestor[k] = k
        for k in range(n):
            j = post[k]
            if parent[j] != -1:
                count[parent[j]] -= 1                  # j is not a root
            for p in range(lo_ptr[j], lo_ptr[j + 1]):
                i = lo_idx[p]
                # is j a leaf of the i-th row subtree?
                if i <= j or first[j] <= maxfirst[i]:
                    continue
                maxfirst[i] = first[j]
                jprev = prevleaf[i]
                prevleaf[i] = j
                count[j] += 1                           # C(i, j) is in the skeleton
                if jprev == -1:
                    continue                            # first leaf: no overlap
                q = jprev                               # least common ancestor of jprev, j
                while q != ancestor[q]:
                    q = ancestor[q]
                s = jprev
                while s != q:
                    sp = ancestor[s]
                    ancestor[s] = q
                    s = sp
                count[q] -= 1                           # the overlap is counted once
            if parent[j] != -1:
                ancestor[j] = parent[j]
        for k in range(n):
            j = post[k]                                 # children before parents
            if parent[j] != -1:
                count[parent[j]] += count[j]


def relaxed_supernodes(const int64_t[::1] parent, const int64_t[::1] count,
                       int64_t nrelax0, int64_t nrelax1, int64_t nrelax2,
                       double zrelax0, double zrelax1, double zrelax2, double max_size,
                       int64_t[::1] super_, int64_t[::1] snz, int64_t[::1] work):
    """CHOLMOD's supernodal partition of a postordered elimination tree.

    Fundamental supernodes: column j joins column j - 1 when j is the parent of j - 1, its
    only child, and count[j - 1] = count[j] + 1. Relaxed amalgamation (cholmod_super.c,
    from the last supernode to the first): a supernode merges into its parent s + 1 when
    the merged node has at most ``nrelax0`` columns, or no new zeros, or a fraction z of
    zeros with (columns <= nrelax1 and z < zrelax0) or (columns <= nrelax2 and z <
    zrelax1) or z < zrelax2, and its dense block below ``max_size`` entries (CHOLMOD's
    integer limit). On return ``super_[0..ns]`` are the first columns of the ns
    supernodes and ``snz[s]`` the rows of supernode s (its dense block is snz[s] x its
    columns). ``super_``, ``snz``: n + 1; ``work``: 4 (n + 1) scratch. Returns ns.
    """
    cdef Py_ssize_t n = parent.shape[0]
    cdef Py_ssize_t j, s, k
    cdef int64_t nf, ns, ss, sparent, snext, nscol0, nscol1, ncol, newzeros, totzeros
    cdef int64_t* nchild = &work[0]
    cdef int64_t* sparent_ = &work[n + 1]
    cdef int64_t* merged = &work[2 * (n + 1)]
    cdef int64_t* zeros = &work[3 * (n + 1)]
    cdef int64_t* nscol = nchild
    cdef int64_t* supermap = zeros
    cdef double xnz, xns, xtot, z
    cdef bint merge
    if n == 0:
        super_[0] = 0
        return 0
    with nogil:
        for j in range(n):
            nchild[j] = 0
        for j in range(n):
            if parent[j] != -1:
                nchild[parent[j]] += 1
        nf = 1
        super_[0] = 0
        for j in range(1, n):
            if parent[j - 1] != j or count[j - 1] != count[j] + 1 or nchild[j] > 1:
                super_[nf] = j
                nf += 1
        super_[nf] = n
        for s in range(nf):
            for k in range(super_[s], super_[s + 1]):
                supermap[k] = s
        for s in range(nf):
            j = super_[s + 1] - 1
            sparent_[s] = -1 if parent[j] == -1 else supermap[parent[j]]
        for s in range(nf):
            merged[s] = -1
            nscol[s] = super_[s + 1] - super_[s]
            zeros[s] = 0
            snz[s] = count[super_[s]]
        for s in range(nf - 2, -1, -1):
            if sparent_[s] == -1:
                continue
            ss = sparent_[s]
            while merged[ss] != -1:
                ss = merged[ss]
            sparent = ss
            ss = sparent_[s]
            while merged[ss] != -1:             # path compression
                snext = merged[ss]
                merged[ss] = sparent
                ss = snext
            if sparent != s + 1:
                continue
            nscol0 = nscol[s]
            nscol1 = nscol[s + 1]
            ncol = nscol0 + nscol1
            totzeros = zeros[s + 1]
            if ncol <= nrelax0:
                merge = True
            else:
                newzeros = nscol0 * (snz[s + 1] + nscol0 - snz[s])
                if newzeros == 0:
                    merge = True
                else:
                    xnz = <double>totzeros + <double>newzeros
                    xns = <double>ncol
                    xtot = xns * (xns + 1.0) / 2.0 + xns * (<double>snz[s + 1] - <double>nscol1)
                    z = xnz / xtot
                    totzeros = totzeros + newzeros
                    merge = ((ncol <= nrelax1 and z < zrelax0) or
                             (ncol <= nrelax2 and z < zrelax1) or z < zrelax2) and xtot < max_size
            if merge:
                zeros[s] = totzeros
                merged[s + 1] = s
                snz[s] = nscol0 + snz[s + 1]
                nscol[s] += nscol[s + 1]
        ns = 0
        for s in range(nf):
            if merged[s] == -1:
                super_[ns] = super_[s]
                snz[ns] = snz[s]
                ns += 1
        super_[ns] = n
    return ns
