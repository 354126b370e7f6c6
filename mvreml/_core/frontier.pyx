# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Inbreeding of deep pedigrees (long lines of descent): the frontier kernels.

Split from mvreml._core.ainv (one job each): here the traces whose cost grows with the depth of
the pedigree rather than with its families (mvreml._inbreeding chooses between them). Same
conventions: flat functions over typed memoryviews, caller-owned buffers, parents numbered
before their offspring, an unknown parent -1.
"""
from libc.stdint cimport int32_t

ctypedef long long i64


# ----------------------------------------------------------------------------- deep pedigrees
def ancestor_bound(const i64[:] sire, const i64[:] dam, const i64[:] gen,
                   const double[:] older, double[:] out):
    """Upper bound on the size of {i} and its ancestors: the smaller of the number of paths
    up the pedigree (1 + bound of sire + bound of dam) and 1 + the number of animals of a
    lower generation (``older[g]``: count of animals with generation below g).

    Parents must be numbered before offspring.  Cost estimate of a trace of i's ancestors.
    """
    cdef Py_ssize_t n = sire.shape[0], i
    cdef double b
    with nogil:
        for i in range(n):
            b = 1.0
            if sire[i] >= 0:
                b += out[sire[i]]
            if dam[i] >= 0 and dam[i] != sire[i]:
                b += out[dam[i]]
            out[i] = min(b, 1.0 + older[gen[i]])


def frontier_plan(const i64[:] sire, const i64[:] dam, const i64[:] comp, i64[:] first,
                  i64[:] last, i64[:] width, double[:] cost):
    """Plan of ``frontier_inbreeding``: first and last child of every animal (-1: none),
    and per component c (``comp`` nondecreasing, one run per component) the number of
    slots (``width[c]``, the most animals alive at once) and the work (``cost[c]``, slots
    written).

    An animal with a known parent and progeny is alive from its own row to its last
    child; a founder from its first child to its last (its row is zero until then).
    ``width`` and ``cost`` are zeroed here.
    """
    cdef Py_ssize_t n = sire.shape[0], i, q
    cdef i64 live = 0, hi = 0, c = -1, p
    with nogil:
        for i in range(n):
            first[i] = -1
            last[i] = -1
        for i in range(width.shape[0]):
            width[i] = 0
            cost[i] = 0.0
        for i in range(n):
            for q in range(2):
                p = sire[i] if q == 0 else dam[i]
                if p >= 0:
                    if first[p] < 0:
                        first[p] = i
                    last[p] = i
        for i in range(n):
            if comp[i] != c:            # earlier components are all dead by now
                c = comp[i]
                live = 0
                hi = 0
            cost[c] += 1.0
            for q in range(2):
                p = sire[i] if q == 0 else dam[i]
                if p >= 0 and first[p] == i and sire[p] < 0 and dam[p] < 0 \
                        and (q == 0 or p != sire[i]):
                    live += 1
                    hi = max(hi, live)
                    cost[c] += hi
            if (sire[i] >= 0 or dam[i] >= 0) and last[i] >= 0:
                live += 1
                hi = max(hi, live)
                cost[c] += hi
            for q in range(2):
                p = sire[i] if q == 0 else dam[i]
                if p >= 0 and last[p] == i and (q == 0 or p != sire[i]):
                    live -= 1
            width[c] = max(width[c], hi)


cdef inline int32_t _take(int32_t* free, i64* state) noexcept nogil:
    """A free slot: the last one freed, else a new one (state[0] free count, state[1] slots
    in use so far)."""
    if state[0] > 0:
        state[0] -= 1
        return free[state[0]]
    state[1] += 1
    return <int32_t>(state[1] - 1)


def frontier_inbreeding(const i64[:] sire, const i64[:] dam, const i64[:] last,
                        i64 start, i64 stop, double[::1] rel, int32_t[::1] slot,
                        int32_t[::1] free, i64[::1] state, double[::1] F):
    """Inbreeding by the tabular method over the animals alive (Emik & Terrill 1949;
    Henderson 1976), for animals ``start <= i < stop``; cost O(n w) for w animals alive at
    once, whatever the depth of the pedigree.

    ``rel`` is a w x w matrix (row-major, w = ``free.shape[0]``, see ``frontier_plan``)
    holding a(j, k) for the animals alive, each in a ``slot``: F_i = a(sire, dam) / 2 is
    read from it, and if i has progeny its row a(i, .) = (a(sire, .) + a(dam, .)) / 2 is
    written into a free slot (a(i, i) = 1 + F_i).  A founder gets a slot (a zero row,
    a(j, j) = 1) at its first child; every animal leaves at its last child.  Rows of free
    slots hold stale values that are never read: a slot's row and column are rewritten
    when it is taken.

    Calls over consecutive ranges continue one computation: ``slot`` (n, all -1 at first),
    ``free`` and ``state`` (2: free count, slots used; zero at first) carry it.  Parents
    must be numbered before offspring, ``last`` as made by ``frontier_plan``.
    """
    cdef i64 w = free.shape[0], i, p, k, hi
    cdef int q
    cdef int32_t t, ts, td
    cdef double fi, v
    cdef double* r = &rel[0]
    cdef double* rs
    cdef double* rd
    with nogil:
        for i in range(start, stop):
            for q in range(2):
                p = sire[i] if q == 0 else dam[i]
                if p >= 0 and slot[p] < 0:     # a founder's first child: zero row
                    t = _take(&free[0], &state[0])
                    slot[p] = t
                    hi = state[1]
                    for k in range(hi):
                        r[t * w + k] = 0.0
                        r[k * w + t] = 0.0
                    r[t * w + t] = 1.0
            ts = slot[sire[i]] if sire[i] >= 0 else -1
            td = slot[dam[i]] if dam[i] >= 0 else -1
            fi = 0.5 * r[ts * w + td] if ts >= 0 and td >= 0 else 0.0
            F[i] = fi
            if (ts >= 0 or td >= 0) and last[i] >= 0:
                t = _take(&free[0], &state[0])
                slot[i] = t
                hi = state[1]
                rs = r + ts * w if ts >= 0 else NULL
                rd = r + td * w if td >= 0 else NULL
                for k in range(hi):
                    v = 0.0
                    if rs != NULL:
                        v = 0.5 * rs[k]
                    if rd != NULL:
                        v = v + 0.5 * rd[k]
                    r[t * w + k] = v
                    r[k * w + t] = v
                r[t * w + t] = 1.0 + fi
            for q in range(2):
                p = sire[i] if q == 0 else dam[i]
                if p >= 0 and last[p] == i and slot[p] >= 0:
                    free[state[0]] = slot[p]
                    state[0] += 1
                    slot[p] = -2                 # dead (never a founder's first child again)
