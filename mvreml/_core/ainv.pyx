# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pedigree kernels: generation numbers, inbreeding coefficients, A^-1 in CSC form.

Flat functions over typed memoryviews; outputs and scratch buffers are allocated and
validated by the caller (mvreml.pedigree).  Animals are integers 0..n-1 and an unknown
parent is -1.  ``generations`` accepts any numbering; the other kernels require parents
to be numbered before their offspring (``sire[i] < i`` and ``dam[i] < i``).
"""
from libc.stdint cimport int32_t

ctypedef long long i64

cdef extern from *:
    """
    /* claim the next batch of a wave: threads share one counter */
    static inline long long mvreml_claim(long long *next) {
        return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
    }
    /* the rows of a batch have nb = 8 or 16 values: loops of a constant length are unrolled
       and vectorised by the compiler; the arithmetic of each value is unchanged */
    #define MVREML_ROWS(nb, body) do { int c_; \
        if ((nb) == 16) { for (c_ = 0; c_ < 16; c_++) { body; } } \
        else if ((nb) == 8) { for (c_ = 0; c_ < 8; c_++) { body; } } \
        else { for (c_ = 0; c_ < (nb); c_++) { body; } } } while (0)
    static inline void mvreml_half(double* restrict y, const double* restrict x, int nb) {
        MVREML_ROWS(nb, y[c_] = 0.5 * x[c_]);
    }
    static inline void mvreml_add_half(double* restrict y, const double* restrict x, int nb) {
        MVREML_ROWS(nb, y[c_] += 0.5 * x[c_]);
    }
    static inline void mvreml_forward(double* restrict y, const double* s, const double* d,
                                      double dj, int nb) {
        MVREML_ROWS(nb, y[c_] = (y[c_] * dj + 0.5 * s[c_]) + 0.5 * d[c_]);
    }
    static inline void mvreml_mean(double* restrict y, const double* s, const double* d, int nb) {
        MVREML_ROWS(nb, y[c_] = (0.0 + 0.5 * s[c_]) + 0.5 * d[c_]);
    }
    """
    i64 claim "mvreml_claim"(i64* nxt) noexcept nogil
    void prefetch "__builtin_prefetch"(const void* p) noexcept nogil
    void row_half "mvreml_half"(double* y, const double* x, int nb) noexcept nogil
    void row_add_half "mvreml_add_half"(double* y, const double* x, int nb) noexcept nogil
    void row_forward "mvreml_forward"(double* y, const double* s, const double* d, double dj,
                                      int nb) noexcept nogil
    void row_mean "mvreml_mean"(double* y, const double* s, const double* d, int nb) noexcept nogil


cdef struct Node:
    # one 32-byte record per animal (two per cache line): the traces are random accesses,
    # so everything read about an animal sits together
    int32_t sire
    int32_t dam
    int32_t stamp    # for the batch whose first key is k: 3 k ancestor of a key, 3 k + 1
                     # a(keys, .) known, 3 k + 2 queued; anything else: none of these
    int32_t gen
    int32_t slot     # row of the batch's values (slab) while stamped by the running batch
    int32_t pad
    double d         # Mendelian-sampling variance, -1 until first needed

NODE_BYTES = sizeof(Node)


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


def generations_in_order(const i64[:] sire, const i64[:] dam, const i64[:] order, i64[:] gen):
    """Generation numbers in one pass when ``order`` lists parents before offspring.

    ``gen[i]`` = 0 without known parents, else 1 + max(gen of parents), visiting the
    animals in ``order`` (a permutation of 0..n-1). Returns False, with ``gen``
    unspecified, as soon as a parent comes after its offspring (then ``generations``
    sorts, and finds cycles); True if the order is parents-first.
    """
    cdef Py_ssize_t n = sire.shape[0], k
    cdef i64 i, s, d, g
    cdef bint ordered = True
    with nogil:
        for k in range(n):
            gen[k] = -1
        for k in range(n):
            i = order[k]
            s = sire[i]
            d = dam[i]
            g = 0
            if s >= 0:
                if gen[s] < 0:
                    ordered = False
                    break
                g = gen[s] + 1
            if d >= 0:
                if gen[d] < 0:
                    ordered = False
                    break
                if gen[d] + 1 > g:
                    g = gen[d] + 1
            gen[i] = g
    return ordered


cdef inline int32_t _enqueue(Node* w, int32_t p, int32_t tag, int32_t* bucket,
                             int32_t* loc_id, int32_t* loc_nxt, int32_t nl) noexcept nogil:
    """Stamp p, put it in the bucket of its generation (LIFO list of local slots nl), and
    prefetch its parents: they are read when p leaves the bucket, so the misses of one
    generation overlap instead of forming a chain."""
    w[p].stamp = tag
    loc_id[nl] = p
    loc_nxt[nl] = bucket[w[p].gen]
    bucket[w[p].gen] = nl
    if w[p].sire >= 0:
        prefetch(&w[w[p].sire])
    if w[p].dam >= 0:
        prefetch(&w[w[p].dam])
    return nl + 1


cdef inline double* _row(Node* w, double* slab, int32_t j, int nb, int32_t t1,
                         int32_t t2) noexcept nogil:
    """Values of j if stamped t1 or t2, else the zero row (unknown or unrelated parent)."""
    if j >= 0 and (w[j].stamp == t1 or w[j].stamp == t2):
        return slab + w[j].slot * nb
    return slab


cdef void _batch(Node* w, double* slab, int32_t* scratch, i64 n, int32_t* bucket,
                 const int32_t* fam_key, const i64* fam_ptr, i64 f0, int nb,
                 const int32_t* prog, const int32_t* mate, double* F) noexcept nogil:
    """F of the progeny of families f0 .. f0 + nb - 1 (keys of one generation), see
    ``inbreeding_batches``.  Column c of a slab row holds the values for key c."""
    cdef int32_t* loc_id = scratch
    cdef int32_t* loc_nxt = scratch + (n + 1)
    cdef int32_t* anc = scratch + 2 * (n + 1)
    cdef int32_t* done = scratch + 3 * (n + 1)
    cdef int32_t anc_tag = 3 * fam_key[f0], memo_tag = anc_tag + 1, open_tag = anc_tag + 2
    cdef int32_t na = 0, nl = 0, nd, nslot = 1, li, j, p, q, g, m, tag
    cdef int32_t min_idx = fam_key[f0], min_gen = w[fam_key[f0]].gen, g_top = min_gen
    cdef int c, col
    cdef i64 k, kend
    cdef double* vj
    cdef double* vp
    cdef double* vs
    cdef double* vd
    cdef double dj
    for col in range(nb):
        slab[col] = 0.0                          # slot 0: the zero row
    # ---- ancestors of the keys by decreasing generation; rows accumulate u = L' e_key
    for c in range(nb):
        j = fam_key[f0 + c]
        nl = _enqueue(w, j, anc_tag, bucket, loc_id, loc_nxt, nl)
        w[j].slot = nslot
        vj = slab + nslot * nb
        nslot += 1
        for col in range(nb):
            vj[col] = 0.0
        vj[c] = 1.0
        g_top = max(g_top, w[j].gen)
    g = g_top
    while g >= 0:
        li = bucket[g]
        if li < 0:
            g -= 1
            continue
        bucket[g] = loc_nxt[li]
        j = loc_id[li]
        anc[na] = j
        na += 1
        min_idx = min(min_idx, j)
        min_gen = min(min_gen, w[j].gen)
        vj = slab + w[j].slot * nb
        for q in range(2):
            p = w[j].sire if q == 0 else w[j].dam
            if p < 0:
                continue
            if w[p].stamp != anc_tag:
                nl = _enqueue(w, p, anc_tag, bucket, loc_id, loc_nxt, nl)
                w[p].slot = nslot
                vp = slab + nslot * nb
                nslot += 1
                row_half(vp, vj, nb)
            else:
                vp = slab + w[p].slot * nb
                row_add_half(vp, vj, nb)
    # ---- forward: x = L D u on the ancestors (parents first); x_j = a(key, j)
    for k in range(na - 1, -1, -1):
        j = anc[k]
        if w[j].d < 0.0:        # F of j's parents is final: their keys came in earlier waves
            w[j].d = 0.5 - 0.25 * ((F[w[j].sire] if w[j].sire >= 0 else -1.0)
                                   + (F[w[j].dam] if w[j].dam >= 0 else -1.0))
        dj = w[j].d
        vj = slab + w[j].slot * nb
        vs = _row(w, slab, w[j].sire, nb, anc_tag, anc_tag)
        vd = _row(w, slab, w[j].dam, nb, anc_tag, anc_tag)
        row_forward(vj, vs, vd, dj, nb)
    # ---- a(key, m) for each mate by the tabular rule a(., t) = (a(., sire_t) + a(., dam_t)) / 2,
    # memoised over the batch.  The unknown ancestors of m are gathered generation by
    # generation (many misses in flight), then evaluated parents first.  Animals below
    # every ancestor of the keys (smaller number or generation) are unrelated to them.
    c = 0
    kend = fam_ptr[f0 + 1]
    for k in range(fam_ptr[f0], fam_ptr[f0 + nb]):
        while k >= kend:
            c += 1
            kend = fam_ptr[f0 + c + 1]
        m = mate[k]
        tag = w[m].stamp
        if tag != anc_tag and tag != memo_tag and m >= min_idx and w[m].gen > min_gen:
            g = w[m].gen
            nl = _enqueue(w, m, open_tag, bucket, loc_id, loc_nxt, 0)
            nd = 0
            while g >= 0:
                li = bucket[g]
                if li < 0:
                    g -= 1
                    continue
                bucket[g] = loc_nxt[li]
                j = loc_id[li]
                done[nd] = j
                nd += 1
                for q in range(2):
                    p = w[j].sire if q == 0 else w[j].dam
                    if p >= min_idx:
                        tag = w[p].stamp
                        if w[p].gen > min_gen and tag != anc_tag and tag != memo_tag \
                                and tag != open_tag:
                            nl = _enqueue(w, p, open_tag, bucket, loc_id, loc_nxt, nl)
            while nd > 0:
                nd -= 1
                j = done[nd]
                vs = _row(w, slab, w[j].sire, nb, anc_tag, memo_tag)
                vd = _row(w, slab, w[j].dam, nb, anc_tag, memo_tag)
                w[j].slot = nslot
                w[j].stamp = memo_tag
                vj = slab + nslot * nb
                nslot += 1
                row_mean(vj, vs, vd, nb)
        F[prog[k]] = 0.5 * _row(w, slab, m, nb, anc_tag, memo_tag)[c]


def inbreeding_setup(const i64[:] sire, const i64[:] dam, const i64[:] gen,
                     unsigned char[::1] work):
    """Fill a work array for ``inbreeding_batches``: n * ``NODE_BYTES`` bytes, 8-aligned.

    One array per thread (stamps and values are private to a thread).
    """
    cdef Py_ssize_t n = sire.shape[0], i
    cdef Node* w = <Node*> &work[0]
    with nogil:
        for i in range(n):
            w[i].sire = <int32_t>sire[i]
            w[i].dam = <int32_t>dam[i]
            w[i].gen = <int32_t>gen[i]
            w[i].stamp = -1
            w[i].slot = 0
            w[i].pad = 0
            w[i].d = -1.0


def inbreeding_batches(unsigned char[::1] work, double[::1] slab, int32_t[::1] scratch,
                       int32_t[::1] bucket, const int32_t[::1] fam_key, const i64[::1] fam_ptr,
                       const i64[::1] batch_ptr, const int32_t[::1] prog, const int32_t[::1] mate,
                       i64 first, i64 last, i64[::1] next_batch, double[::1] F):
    """Inbreeding coefficients by families of a key parent (Colleau 2002; Sargolzaei et al.
    2005), several families at a time.

    Family f has key animal s = ``fam_key[f]`` and progeny ``prog[fam_ptr[f]:fam_ptr[f+1]]``,
    each with one parent s and the other ``mate[.]`` (both parents known).  For key s,
    x = A e_s is computed on the ancestors of s as L D L' e_s (one backward trace by
    generation buckets, one forward pass), then a(s, m) for every mate m by the tabular
    recursion memoised over the family, cut below the ancestors of s; F = a(s, m) / 2.
    The nb families ``batch_ptr[t] <= f < batch_ptr[t+1]`` of batch t (keys of one
    generation) share one trace: each animal is visited once for all of them, with a row
    of nb values (one per key) in ``slab``; keys with related ancestry share the most.
    The d_j of the ancestors need F of their parents, so batches must come in waves of
    increasing generation of the keys; the batches of one wave are independent.

    The calling threads claim batches ``first <= t < last`` one at a time through the shared
    counter ``next_batch[0]`` (set to ``first`` before the wave), each with its own ``work``
    (see ``inbreeding_setup``), ``slab`` ((n + 1) * max nb float64), ``scratch``
    (4 (n + 1) int32) and ``bucket`` (max gen + 1 int32, all -1; left so).  Writes F of
    the progeny only; the result does not depend on the number of threads.  Requires
    n < 2^28 and parents numbered before offspring.
    """
    cdef i64 n = scratch.shape[0] // 4 - 1
    cdef i64 t
    cdef Node* w = <Node*> &work[0]
    with nogil:
        while True:
            t = claim(&next_batch[0])
            if t >= last:
                break
            _batch(w, &slab[0], &scratch[0], n, &bucket[0], &fam_key[0], &fam_ptr[0],
                   batch_ptr[t], <int>(batch_ptr[t + 1] - batch_ptr[t]), &prog[0], &mate[0],
                   &F[0])


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
