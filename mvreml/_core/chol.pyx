# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The few CHOLMOD calls the REML engine needs, bound directly against cholmod.h.

Long-index API (``cholmod_l_*``: 64-bit row indices and pointers, so a factor of several
billion entries fits), supernodal LL' only. One `Factor` owns one ``cholmod_common`` and one
``cholmod_factor``: analysed once, refactorized in place at every iterate, its supernode arrays
(``super``, ``pi``, ``px``, ``s``, ``x``) handed out as numpy views of CHOLMOD's own memory (no
copy), freed in ``__dealloc__``. The calls used (start / finish / analyze / factorize / solve /
copy_factor / free_factor / free_dense) and the struct fields read have the same names and
meaning in CHOLMOD 3 (SuiteSparse 5) and CHOLMOD 4-5 (SuiteSparse 6-7).

Validation of the arrays passed in is the caller's (mvreml/chol.py); here only what CHOLMOD
itself would crash on is checked (lengths, dtypes through the memoryview types).
"""
from libc.stdint cimport int64_t
from libc.string cimport memcpy
from cpython.ref cimport Py_INCREF
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "cholmod.h" nogil:
    int CHOLMOD_MAIN_VERSION
    int CHOLMOD_SUB_VERSION
    int CHOLMOD_OK, CHOLMOD_NOT_POSDEF, CHOLMOD_OUT_OF_MEMORY, CHOLMOD_TOO_LARGE
    int CHOLMOD_INVALID, CHOLMOD_NOT_INSTALLED, CHOLMOD_DSMALL
    int CHOLMOD_NATURAL, CHOLMOD_GIVEN, CHOLMOD_AMD, CHOLMOD_METIS, CHOLMOD_NESDIS, CHOLMOD_COLAMD
    int CHOLMOD_SUPERNODAL, CHOLMOD_REAL, CHOLMOD_PATTERN, CHOLMOD_DOUBLE, CHOLMOD_LONG
    int CHOLMOD_A

    ctypedef struct cholmod_method_struct:
        int ordering
        double prune_dense
        double lnz
        double fl

    ctypedef struct cholmod_common:
        int supernodal
        int final_asis
        int final_super
        int final_ll
        int print "print"
        int nmethods
        int current
        int selected
        int postorder
        int status
        int quick_return_if_not_posdef
        double fl
        double lnz
        double anz
        double zrelax[3]
        size_t nrelax[3]
        cholmod_method_struct method[10]

    ctypedef struct cholmod_sparse:
        size_t nrow, ncol, nzmax
        void *p
        void *i
        void *nz
        void *x
        void *z
        int stype, itype, xtype, dtype, sorted, packed

    ctypedef struct cholmod_dense:
        size_t nrow, ncol, nzmax, d
        void *x
        void *z
        int xtype, dtype

    ctypedef struct cholmod_factor:
        size_t n, minor
        void *Perm
        size_t nsuper, ssize, xsize
        void *super "super"
        void *pi
        void *px
        void *s
        void *x
        int ordering, is_ll, is_super, xtype, itype, dtype

    int cholmod_l_start(cholmod_common *)
    int cholmod_l_finish(cholmod_common *)
    cholmod_factor *cholmod_l_analyze(cholmod_sparse *, cholmod_common *)
    cholmod_factor *cholmod_l_analyze_p(cholmod_sparse *, int64_t *, int64_t *, size_t, cholmod_common *)
    int cholmod_l_camd(cholmod_sparse *, int64_t *, size_t, int64_t *, int64_t *, cholmod_common *)
    int cholmod_l_factorize(cholmod_sparse *, cholmod_factor *, cholmod_common *)
    cholmod_dense *cholmod_l_solve(int, cholmod_factor *, cholmod_dense *, cholmod_common *)
    cholmod_factor *cholmod_l_copy_factor(cholmod_factor *, cholmod_common *)
    int cholmod_l_free_factor(cholmod_factor **, cholmod_common *)
    int cholmod_l_free_dense(cholmod_dense **, cholmod_common *)

#: (main, sub) version of the CHOLMOD this module was compiled against
VERSION = (CHOLMOD_MAIN_VERSION, CHOLMOD_SUB_VERSION)

#: the ordering names understood by `Factor.analyze`, and CHOLMOD's codes for them
ORDERINGS = {"natural": CHOLMOD_NATURAL, "amd": CHOLMOD_AMD, "metis": CHOLMOD_METIS,
             "nesdis": CHOLMOD_NESDIS, "colamd": CHOLMOD_COLAMD}

# factor states (Factor.state)
EMPTY, SYMBOLIC, NUMERIC, FAILED, CONSUMED = 0, 1, 2, 3, 4

STATUS = {0: "ok", 1: "not positive definite", 2: "tiny pivot", -1: "method not installed",
          -2: "out of memory", -3: "problem too large (integer overflow)", -4: "invalid input"}


class CholmodCallError(RuntimeError):
    """A CHOLMOD call failed; ``status`` is Common->status (mvreml/chol.py maps it to a typed error)."""

    def __init__(self, call, status):
        super().__init__(f"CHOLMOD {call} failed: {STATUS.get(status, status)} (status {status})")
        self.call = call
        self.status = status


cdef cholmod_sparse _lower_view(const int64_t[::1] indptr, const int64_t[::1] indices,
                                const double[::1] data, size_t n, bint values):
    """A cholmod_sparse header over caller-owned CSC arrays (lower triangle, sorted, packed)."""
    cdef cholmod_sparse A
    A.nrow = n
    A.ncol = n
    A.nzmax = indices.shape[0]
    A.p = <void*> &indptr[0]
    A.i = <void*> &indices[0] if indices.shape[0] > 0 else NULL
    A.nz = NULL
    A.x = <void*> &data[0] if values and data.shape[0] > 0 else NULL
    A.z = NULL
    A.stype = -1
    A.itype = CHOLMOD_LONG
    A.xtype = CHOLMOD_REAL if values else CHOLMOD_PATTERN
    A.dtype = CHOLMOD_DOUBLE
    A.sorted = 1
    A.packed = 1
    return A


cdef class Factor:
    """A supernodal LL' CHOLMOD factor of one fixed pattern, refactorized in place.

    ``state`` is EMPTY (nothing analysed), SYMBOLIC (analysed), NUMERIC (L of the last
    ``factorize``), FAILED (the last ``factorize`` hit a non-positive pivot) or CONSUMED (``x``
    was overwritten by the selected inverse: no solve until the next ``factorize``).
    """
    cdef cholmod_common c
    cdef cholmod_factor *L
    cdef readonly int state
    cdef readonly Py_ssize_t n

    def __cinit__(self):
        self.L = NULL
        self.state = EMPTY
        self.n = 0
        cholmod_l_start(&self.c)
        self.c.print = 0                 # status codes are read; nothing printed on stdout
        self.c.supernodal = CHOLMOD_SUPERNODAL
        self.c.final_asis = 1            # supernodal LL' stays as it is after factorize
        self.c.quick_return_if_not_posdef = 1

    def __dealloc__(self):
        if self.L != NULL:
            cholmod_l_free_factor(&self.L, &self.c)
        cholmod_l_finish(&self.c)

    def analyze(self, const int64_t[::1] indptr, const int64_t[::1] indices, str ordering="default",
                bint postorder=True, int64_t[::1] last=None, tuple nrelax=None, tuple zrelax=None):
        """Symbolic analysis of the lower-triangular pattern (indptr, indices), n = len(indptr) - 1.

        ``ordering``: "default" (CHOLMOD's own choice: AMD, METIS when AMD fills badly), "best"
        (all of CHOLMOD's methods, the least fill kept), one of `ORDERINGS`, or "camd": minimum
        degree constrained to order the columns flagged 1 in ``last`` (length n, 0 / 1) after
        all the others (CHOLMOD's CAMD, then the analysis of that permutation).
        ``nrelax`` (3 ints), ``zrelax`` (3 floats): CHOLMOD's relaxed supernodal amalgamation
        (Common->nrelax, zrelax; None keeps CHOLMOD's defaults 4, 16, 48 and 0.8, 0.1, 0.05).
        """
        cdef size_t n = indptr.shape[0] - 1
        cdef double[::1] nodata = np.empty(0)
        cdef cholmod_sparse A = _lower_view(indptr, indices, nodata, n, False)
        cdef cholmod_factor *L
        cdef int64_t[::1] perm
        cdef int ok = 1
        cdef int r
        if ordering == "default":
            self.c.nmethods = 0
        elif ordering == "best":
            self.c.nmethods = 9
        elif ordering == "camd":
            if last is None or last.shape[0] != n:
                raise ValueError("ordering 'camd' needs last= (one 0 / 1 flag per column)")
            self.c.nmethods = 1
            self.c.method[0].ordering = CHOLMOD_GIVEN
        else:
            self.c.nmethods = 1
            self.c.method[0].ordering = ORDERINGS[ordering]
        self.c.postorder = postorder
        if nrelax is not None:
            if len(nrelax) != 3 or min(nrelax) < 0:
                raise ValueError(f"nrelax must be 3 non-negative ints, got {nrelax!r}")
            for r in range(3):
                self.c.nrelax[r] = <size_t> nrelax[r]
        if zrelax is not None:
            if len(zrelax) != 3:
                raise ValueError(f"zrelax must be 3 floats, got {zrelax!r}")
            for r in range(3):
                self.c.zrelax[r] = <double> zrelax[r]
        if ordering == "camd":
            perm = np.empty(max(n, 1), dtype=np.int64)
            with nogil:
                ok = cholmod_l_camd(&A, NULL, 0, &last[0], &perm[0], &self.c) if n > 0 else 1
                if ok:
                    L = cholmod_l_analyze_p(&A, &perm[0], NULL, 0, &self.c)
            if not ok:
                raise CholmodCallError("camd", self.c.status)
        else:
            with nogil:
                L = cholmod_l_analyze(&A, &self.c)
        if L == NULL:
            raise CholmodCallError("analyze", self.c.status)
        if self.L != NULL:
            cholmod_l_free_factor(&self.L, &self.c)
        self.L = L
        self.n = n
        self.state = SYMBOLIC

    def factorize(self, const int64_t[::1] indptr, const int64_t[::1] indices, const double[::1] data):
        """Numeric factorization in place; returns -1 on success, else the failing column
        (permuted order) when the matrix is not positive definite."""
        self._need(SYMBOLIC)
        cdef cholmod_sparse A = _lower_view(indptr, indices, data, self.n, True)
        cdef int ok
        if self.n == 0:                  # nothing to factorize (CHOLMOD rejects an empty x)
            self.state = NUMERIC
            return -1
        with nogil:
            ok = cholmod_l_factorize(&A, self.L, &self.c)
        if self.c.status == CHOLMOD_NOT_POSDEF:
            self.state = FAILED
            return <Py_ssize_t> self.L.minor
        if not ok or self.c.status < CHOLMOD_OK:
            self.state = FAILED
            raise CholmodCallError("factorize", self.c.status)
        if not (self.L.is_super and self.L.is_ll):
            self.state = FAILED
            raise CholmodCallError("factorize (not a supernodal LL' factor)", CHOLMOD_INVALID)
        self.state = NUMERIC
        return -1

    def solve(self, double[::1, :] B):
        """C^-1 B for a Fortran-ordered n x k block B (a new Fortran array)."""
        self._need(NUMERIC)
        if B.shape[0] != self.n:
            raise ValueError(f"right-hand side has {B.shape[0]} rows, the factor {self.n}")
        cdef cnp.ndarray out = np.empty((B.shape[0], B.shape[1]), order="F")
        if B.shape[1] == 0 or B.shape[0] == 0:
            return out
        cdef cholmod_dense Bd
        cdef cholmod_dense *X
        Bd.nrow = B.shape[0]
        Bd.ncol = B.shape[1]
        Bd.nzmax = Bd.nrow * Bd.ncol
        Bd.d = Bd.nrow
        Bd.x = <void*> &B[0, 0]
        Bd.z = NULL
        Bd.xtype = CHOLMOD_REAL
        Bd.dtype = CHOLMOD_DOUBLE
        with nogil:
            X = cholmod_l_solve(CHOLMOD_A, self.L, &Bd, &self.c)
        if X == NULL:
            raise CholmodCallError("solve", self.c.status)
        with nogil:
            memcpy(cnp.PyArray_DATA(out), X.x, Bd.nzmax * sizeof(double))
        cholmod_l_free_dense(&X, &self.c)
        return out

    def copy(self):
        """A new Factor holding a copy of this one (its symbolic analysis and values)."""
        self._need(SYMBOLIC)
        cdef Factor other = Factor()
        other.L = cholmod_l_copy_factor(self.L, &other.c)
        if other.L == NULL:
            raise CholmodCallError("copy_factor", other.c.status)
        other.n = self.n
        other.state = self.state if self.state != FAILED else SYMBOLIC
        return other

    def mark_consumed(self):
        """Record that ``x`` now holds the selected inverse (set by the caller after the kernel)."""
        self._need(NUMERIC)
        self.state = CONSUMED

    # --------------------------------------------------------------- views, no copies
    cdef object _view(self, void *ptr, Py_ssize_t length, int typenum):
        cdef cnp.npy_intp dims[1]
        dims[0] = length
        if length == 0 or ptr == NULL:
            return np.empty(0, dtype=np.int64 if typenum == cnp.NPY_INT64 else np.float64)
        arr = cnp.PyArray_SimpleNewFromData(1, dims, typenum, ptr)
        Py_INCREF(self)                  # the view keeps this Factor (and CHOLMOD's memory) alive
        cnp.PyArray_SetBaseObject(arr, self)
        return arr

    def perm(self):
        """The fill-reducing permutation: row k of L is row perm[k] of C (a copy)."""
        self._need(SYMBOLIC)
        return self._view(self.L.Perm, self.n, cnp.NPY_INT64).copy()

    def supernodes(self):
        """(super, pi, px, s): views of the supernodal structure (CHOLMOD's arrays, not copies).

        Supernode j holds columns super[j]:super[j+1]; its row indices are s[pi[j]:pi[j+1]]
        (the columns first, then the rows below, ascending); its values are the
        nsrow x ncols column-major block x[px[j]:px[j] + nsrow * ncols].
        """
        self._need(SYMBOLIC)
        if not self.L.is_super:
            raise CholmodCallError("supernodes (not a supernodal factor)", CHOLMOD_INVALID)
        cdef Py_ssize_t ns = self.L.nsuper
        return (self._view(self.L.super, ns + 1, cnp.NPY_INT64),
                self._view(self.L.pi, ns + 1, cnp.NPY_INT64),
                self._view(self.L.px, ns + 1, cnp.NPY_INT64),
                self._view(self.L.s, self.L.ssize, cnp.NPY_INT64))

    def values(self):
        """View of L->x (the factor's values, or the selected inverse once consumed)."""
        if self.state not in (NUMERIC, CONSUMED):
            raise CholmodCallError("values (no numeric factor held)", CHOLMOD_INVALID)
        return self._view(self.L.x, self.L.xsize, cnp.NPY_FLOAT64)

    def analysis(self):
        """CHOLMOD's figures of the last analysis: flops of one factorization, nnz(L), nnz(tril C)."""
        return {"flops": float(self.c.fl), "lnz": float(self.c.lnz), "anz": float(self.c.anz),
                "nrelax": (int(self.c.nrelax[0]), int(self.c.nrelax[1]), int(self.c.nrelax[2])),
                "zrelax": (self.c.zrelax[0], self.c.zrelax[1], self.c.zrelax[2]),
                "xsize": int(self.L.xsize) if self.L != NULL else 0,
                "nsuper": int(self.L.nsuper) if self.L != NULL else 0}

    cdef _need(self, int state):
        if self.L == NULL or self.state < SYMBOLIC:
            raise CholmodCallError("(no analysis held)", CHOLMOD_INVALID)
        if state == NUMERIC and self.state != NUMERIC:
            what = {FAILED: "the last factorization failed",
                    CONSUMED: "the factor was overwritten by the selected inverse",
                    SYMBOLIC: "the matrix was only analysed"}[self.state]
            raise CholmodCallError(f"(no numeric factor: {what})", CHOLMOD_INVALID)
