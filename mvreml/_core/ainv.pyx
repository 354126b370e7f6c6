# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pedigree kernels: generation numbers, inbreeding coefficients, A^-1 in CSC form.

Flat functions over typed memoryviews; outputs and scratch buffers are allocated and
validated by the caller (mvreml.pedigree), except the packed per-animal work record of
``inbreeding``, which lives only for the call.  Animals are integers 0..n-1 and an unknown
parent is -1.  ``generations`` accepts any numbering; the other kernels require parents
to be numbered before their offspring (``sire[i] < i`` and ``dam[i] < i``).
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport int32_t

ctypedef long long i64


cdef struct Node:
    # one cache-friendly record per animal for the inbreeding kernel (random access)
    int32_t sire
    int32_t dam
    int32_t gen
    int32_t nxt      # next animal in the same generation bucket
    int32_t stamp    # 3 s: ancestor of sire s; 3 s + 1: a(s, .) known; 3 s + 2: open; -1
    int32_t pad      # (32-byte records: one cache line holds two animals)
    double val       # u = L' e_s, then a(s, .)


def generations(const i64[:] sire, const i64[:] dam, i64[:] child_ptr, i64[:] child_idx,
                i64[:] pending, i64[:] queue, i64[:] gen):
    """Generation numbers by Kahn's topological sort.

    ``gen[i]`` = 0 for an animal without known parents, else 1 + max(gen of parents);
    animals on (or descending from) a cycle keep ``gen = -1``.

    Scratch: ``child_ptr`` (n + 1), ``child_idx`` (2 n), ``pending`` (n), ``queue`` (n).
    Returns the number of animals that received a generation (n when acyclic).
    """
    cdef Py_ssize_t n = sire.shape[0]
    cdef Py_ssize_t i, k, c, head = 0, tail = 0
    cdef i64 p, g
    with nogil:
        for i in range(n + 1):
            child_ptr[i] = 0
        for i in range(n):
            gen[i] = -1
            pending[i] = 0
            if sire[i] >= 0:
                child_ptr[sire[i] + 1] += 1
                pending[i] += 1
            if dam[i] >= 0:
                child_ptr[dam[i] + 1] += 1
                pending[i] += 1
        for i in range(n):
            child_ptr[i + 1] += child_ptr[i]
        # fill the children lists; `queue` doubles as the running insertion cursor
        for i in range(n):
            queue[i] = child_ptr[i]
        for i in range(n):
            p = sire[i]
            if p >= 0:
                child_idx[queue[p]] = i
                queue[p] += 1
            p = dam[i]
            if p >= 0:
                child_idx[queue[p]] = i
                queue[p] += 1
        for i in range(n):
            if pending[i] == 0:
                gen[i] = 0
                queue[tail] = i
                tail += 1
        while head < tail:
            i = queue[head]
            head += 1
            g = gen[i] + 1
            for k in range(child_ptr[i], child_ptr[i + 1]):
                c = child_idx[k]
                if gen[c] < g:
                    gen[c] = g
                pending[c] -= 1
                if pending[c] == 0:
                    queue[tail] = c
                    tail += 1
        # children reached before all their parents were processed carry a provisional gen
        for i in range(n):
            if pending[i] != 0:
                gen[i] = -1
    return tail


def inbreeding(const i64[:] sire, const i64[:] dam, const i64[:] gen,
                        const i64[:] prog_ptr, const i64[:] prog_idx,
                        double[:] F, double[:] d, i64[:] anc_list, i64[:] stack, i64[:] bucket):
    """Inbreeding coefficients by sire families (Colleau 2002; Sargolzaei et al. 2005).

    Sires are taken in increasing order.  For sire s, x = A e_s is computed on the
    ancestors of s (x = L D L' e_s: one backward trace by generation buckets, one forward
    pass) and then, for each mate m, a(s, m) by the tabular recursion
    a(s, k) = (a(s, sire_k) + a(s, dam_k)) / 2, memoised over the whole family and cut
    where k cannot descend from an ancestor of s.  F_i = a(s, m) / 2.  The d_j needed
    (ancestors j of s) use F of the parents of j, progeny of earlier sires: known.

    Requires n < 2^31 / 3 and parents numbered before offspring.  Inputs: ``prog_ptr`` /
    ``prog_idx`` (CSR) list, for each animal s, the progeny whose F is obtained through
    s: each animal with both parents known appears once, under either parent (called
    "sire" s above; the other parent is its mate).  Outputs ``F``, ``d`` (n).
    Scratch: ``anc_list`` (n), ``stack`` (2 n + 2), ``bucket`` (max gen + 1, all -1).
    The per-animal work record (32 bytes) is allocated here and freed before returning.
    """
    cdef Py_ssize_t n = sire.shape[0]
    cdef Py_ssize_t i, k, na, top, q
    cdef i64 s, m, j, p, g, t, min_idx, min_gen
    cdef int32_t anc_tag, memo_tag, open_tag, tag
    cdef double r, x
    cdef bint ready
    cdef Node* w = <Node*> malloc(max(n, 1) * sizeof(Node))
    if w == NULL:
        raise MemoryError("inbreeding: cannot allocate the work array")
    with nogil:
        for i in range(n):
            w[i].sire = <int32_t>sire[i]
            w[i].dam = <int32_t>dam[i]
            w[i].gen = <int32_t>gen[i]
            w[i].stamp = -1
            d[i] = 0.0          # d doubles as the cache of d_j, 0 until first needed
            F[i] = 0.0
        for s in range(n):
            if prog_ptr[s + 1] == prog_ptr[s]:
                continue
            anc_tag = <int32_t>(3 * s)
            memo_tag = anc_tag + 1
            open_tag = anc_tag + 2
            # ---- ancestors of s by decreasing generation; val accumulates u = L' e_s
            na = 0
            min_idx = s
            min_gen = w[s].gen
            w[s].stamp = anc_tag
            w[s].val = 1.0
            w[s].nxt = -1
            g = w[s].gen
            bucket[g] = s
            while g >= 0:
                j = bucket[g]
                if j < 0:
                    g -= 1
                    continue
                bucket[g] = w[j].nxt
                anc_list[na] = j
                na += 1
                if j < min_idx:
                    min_idx = j
                if w[j].gen < min_gen:
                    min_gen = w[j].gen
                r = 0.5 * w[j].val
                for q in range(2):
                    p = w[j].sire if q == 0 else w[j].dam
                    if p < 0:
                        continue
                    if w[p].stamp != anc_tag:
                        w[p].stamp = anc_tag
                        w[p].val = 0.0
                        w[p].nxt = <int32_t>bucket[w[p].gen]
                        bucket[w[p].gen] = p
                    w[p].val += r
            # ---- forward: x = L D u on the ancestors (parents before offspring)
            for k in range(na - 1, -1, -1):
                j = anc_list[k]
                if d[j] == 0.0:
                    d[j] = 0.5 - 0.25 * ((F[w[j].sire] if w[j].sire >= 0 else -1.0)
                                         + (F[w[j].dam] if w[j].dam >= 0 else -1.0))
                x = w[j].val * d[j]
                if w[j].sire >= 0:
                    x += 0.5 * w[w[j].sire].val
                if w[j].dam >= 0:
                    x += 0.5 * w[w[j].dam].val
                w[j].val = x
            # ---- a(s, m) for every mate m by memoised recursion (explicit stack; a
            # node is "open" once its unresolved parents are pushed, computed on return)
            for k in range(prog_ptr[s], prog_ptr[s + 1]):
                i = prog_idx[k]
                m = dam[i] if sire[i] == s else sire[i]
                if m < 0:
                    continue
                stack[0] = m
                top = 1
                while top > 0:
                    t = stack[top - 1]
                    tag = w[t].stamp
                    if tag == anc_tag or tag == memo_tag or t < min_idx or w[t].gen <= min_gen:
                        top -= 1
                        continue
                    if tag != open_tag:
                        w[t].stamp = open_tag
                        ready = True
                        for q in range(2):
                            p = w[t].sire if q == 0 else w[t].dam
                            if p >= min_idx and w[p].gen > min_gen and w[p].stamp != anc_tag \
                                    and w[p].stamp != memo_tag:
                                stack[top] = p
                                top += 1
                                ready = False
                        if not ready:
                            continue
                    x = 0.0
                    for q in range(2):
                        p = w[t].sire if q == 0 else w[t].dam
                        if p >= 0 and (w[p].stamp == anc_tag or w[p].stamp == memo_tag):
                            x += 0.5 * w[p].val
                    w[t].val = x
                    w[t].stamp = memo_tag
                    top -= 1
                if w[m].stamp == anc_tag or w[m].stamp == memo_tag:
                    F[i] = 0.5 * w[m].val
        for i in range(n):
            d[i] = 0.5 - 0.25 * ((F[sire[i]] if sire[i] >= 0 else -1.0)
                                 + (F[dam[i]] if dam[i] >= 0 else -1.0))
    free(w)


cdef inline void _sort_pairs(int* key, double* val, Py_ssize_t n) noexcept nogil:
    """Sort ``key`` ascending carrying ``val``: insertion sort when short, else heapsort."""
    cdef Py_ssize_t i, j, start, root, child, end
    cdef int k
    cdef double v
    if n <= 24:
        for i in range(1, n):
            k = key[i]
            v = val[i]
            j = i - 1
            while j >= 0 and key[j] > k:
                key[j + 1] = key[j]
                val[j + 1] = val[j]
                j -= 1
            key[j + 1] = k
            val[j + 1] = v
        return
    end = n
    start = n // 2
    while True:
        if start > 0:
            start -= 1
        else:
            end -= 1
            if end == 0:
                break
            k = key[end]; key[end] = key[0]; key[0] = k
            v = val[end]; val[end] = val[0]; val[0] = v
        root = start
        while True:
            child = 2 * root + 1
            if child >= end:
                break
            if child + 1 < end and key[child + 1] > key[child]:
                child += 1
            if key[root] >= key[child]:
                break
            k = key[root]; key[root] = key[child]; key[child] = k
            v = val[root]; val[root] = val[child]; val[child] = v
            root = child


def ainv_csc(const i64[:] sire, const i64[:] dam, const double[:] dinv,
             int[:] indptr, int[:] indices, double[:] data, int[:] fill):
    """A^-1 (both triangles, sorted rows, no duplicates) straight into CSC arrays.

    Henderson's rules with Quaas' d_i: animal i adds alpha = 1/d_i times the outer
    product of [1, -1/2, -1/2] on (i, sire, dam).  Diagonal contributions go to the first
    slot of each column; off-diagonals are appended, then every column is sorted and its
    duplicates (full sibs, parent-offspring matings) summed.

    Buffers: ``indptr`` (n + 1), ``indices``/``data`` of n + 2 (known parents) + 2 (animals
    with both parents known) entries (int32: the caller checks that this fits), ``fill``
    (n) scratch.  Returns nnz; ``indptr`` is final.
    """
    cdef Py_ssize_t n = sire.shape[0]
    cdef Py_ssize_t i, a, b, m, c, k, lo, hi, out
    cdef int idx[3]
    cdef double coef[3]
    cdef double alpha
    with nogil:
        for c in range(n + 1):
            indptr[c] = 0
        for i in range(n):
            indptr[i + 1] += 1
            m = (sire[i] >= 0) + (dam[i] >= 0)
            indptr[i + 1] += <int>m
            if sire[i] >= 0:
                indptr[sire[i] + 1] += 1 + (dam[i] >= 0)
            if dam[i] >= 0:
                indptr[dam[i] + 1] += 1 + (sire[i] >= 0)
        for c in range(n):
            indptr[c + 1] += indptr[c]
            indices[indptr[c]] = <int>c
            data[indptr[c]] = 0.0
            fill[c] = indptr[c] + 1
        for i in range(n):
            alpha = dinv[i]
            idx[0] = <int>i
            coef[0] = 1.0
            m = 1
            if sire[i] >= 0:
                idx[m] = <int>sire[i]
                coef[m] = -0.5
                m += 1
            if dam[i] >= 0:
                idx[m] = <int>dam[i]
                coef[m] = -0.5
                m += 1
            for a in range(m):
                for b in range(m):
                    if idx[a] == idx[b]:
                        data[indptr[idx[b]]] += alpha * coef[a] * coef[b]
                    else:
                        k = fill[idx[b]]
                        indices[k] = idx[a]
                        data[k] = alpha * coef[a] * coef[b]
                        fill[idx[b]] = <int>(k + 1)
        # sort each column, sum duplicates and compact (columns only move left)
        out = 0
        lo = 0
        for c in range(n):
            hi = fill[c]
            _sort_pairs(&indices[lo], &data[lo], hi - lo)
            indptr[c] = <int>out
            k = lo
            while k < hi:
                indices[out] = indices[k]
                data[out] = data[k]
                k += 1
                while k < hi and indices[k] == indices[out]:
                    data[out] += data[k]
                    k += 1
                out += 1
            lo = indptr[c + 1]
        indptr[n] = <int>out
    return out
