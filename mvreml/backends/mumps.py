"""MUMPS over MPI (PyMUMPS + mpi4py) behind the :class:`~.base.Backend` interface.

What the engine needs, in MUMPS's terms (MUMPS 5.5 user guide), for C symmetric positive
definite (``SYM=1``, no pivoting; the host works too, ``PAR=1``):

- the analysis once (``JOB=1``): ordering and symbolic factorization. Its forecasts of
  memory, ``INFO(15)`` on every rank (MB for the in-core factorization) and ``INFOG(16)`` /
  ``INFOG(17)`` (their maximum and sum), are logged before any factorization;
- the numeric factorization at each iterate (``JOB=2``) on entries distributed over the
  ranks (``ICNTL(18)=3``, distributed assembled input: the entries several ranks give at
  one position are summed), with the determinant (``ICNTL(33)=1``: det = RINFOG(12) *
  2^INFOG(34)) and the count of negative pivots (``INFOG(12)``, > 0 when C is not positive
  definite);
- solves with a dense right-hand side on the host (``JOB=3``);
- entries of C^-1 on the pattern of C (``ICNTL(30)=1``: A^-1 at a sparse right-hand-side
  pattern given column by column in ``IRHS_PTR`` / ``IRHS_SPARSE``, values in ``RHS_SPARSE``),
  each pair asked once, in the column eliminated first (``SYM_PERM``), 256 columns a block
  (``ICNTL(27)``). MUMPS computes it by solves along each column's path to the root of the
  elimination tree: ~200x the arithmetic of CHOLMOD's Takahashi recursion on a pedigree's
  equations, most of a MUMPS fit (benchmarks/RESULTS.md).

In a fit the ranks assemble C themselves (:mod:`.share`): each its records' W_r'R_r^-1 W_r
from the rows of the design rank 0 sends it once, rank 0 the G^-1 part; an iterate sends
only R^-1 by missing-value pattern. A matrix given as such (:meth:`MumpsBackend.analyze`,
``factorize``: the generic interface) is given to MUMPS whole by rank 0.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from . import mpi
from .base import AssemblingBackend, NotPositiveDefinite, as_dense_rhs

log = logging.getLogger("mvreml")

__all__ = ["MumpsBackend", "MumpsCore"]

_LOG2 = np.log(2.0)
_DATA_TAG = 7718        # rank 0's pieces of the design (point to point, once per analysis)
# MUMPS errors that more workspace cures (INFO(1) = -8, -9: main workspace too small,
# -14, -15: integer / real workspace, -17, -20: buffers): ICNTL(14) doubled, at most 4 times
_WORKSPACE_ERRORS = (-8, -9, -14, -15, -17, -20)
#: the largest C the MUMPS backend hands to a CHOLMOD factorization to find the failing column
DIAGNOSE_MAX_EQUATIONS = 200_000
#: ICNTL(27) of the selected inverse: right-hand sides MUMPS takes per block (its default -32).
#: Every column's solves cross the top of the elimination tree, whose dense fronts are then
#: applied to the block at once (BLAS 3); with the oriented request, 256 took 0.76-0.77 of -32's time
#: on U-M and B-M, 1024 and 4096 longer again (benchmarks/RESULTS.md, "issue 19: MUMPS selected
#: inverse")
SELINV_RHS_BLOCK = 256


class MumpsCore:
    """One MUMPS instance, present on every rank; each method is a collective step.

    Rank 0 passes the data (``data`` argument), the other ranks None: :func:`mpi.serve`
    calls the same methods there, in the same order.
    """

    def __init__(self, comm):
        import mumps

        self.comm = comm
        self.ctx = mumps.DMumpsContext(par=1, sym=1, comm=comm)
        self.ctx.set_silent()
        self.ctx.set_icntl(18, 3)       # distributed assembled entries
        self.ctx.set_icntl(33, 1)       # the determinant
        self.counts = None
        self.a_loc = None
        self.n = 0
        self._sel = None
        self.position = None            # rank 0: each equation's place in the pivot order (0-based)
        self.rhs_block = SELINV_RHS_BLOCK

    # -- helpers
    def _scatter(self, full, dtype):
        """Rank r's contiguous share of `full` (rank 0's array), by self.counts."""
        comm = self.comm
        out = np.empty(int(self.counts[comm.rank]), dtype=dtype)
        if comm.size == 1:
            out[:] = full
            return out
        from mpi4py import MPI

        mpitype = MPI.INT if dtype == np.int32 else MPI.DOUBLE
        send = None
        if comm.rank == 0:
            displ = np.concatenate([[0], np.cumsum(self.counts[:-1])])
            send = [np.ascontiguousarray(full, dtype=dtype), self.counts, displ, mpitype]
        comm.Scatterv(send, [out, mpitype], root=0)
        return out

    def _run(self, job: int) -> int:
        """ctx.run(job); returns INFOG(1) (0, a warning > 0, or an error < 0), the same on every rank."""
        try:
            self.ctx.run(job=job)
        except RuntimeError:         # PyMUMPS raises on INFOG(1) < 0, on every rank alike
            pass
        return int(self.ctx.get_infog(1))

    # -- collective steps
    def analyze(self, data):
        """Every rank's entries of C's lower triangle to MUMPS, then JOB=1.

        Rank 0 passes (n, piece, ranges, stack, extra_rows, extra_cols, perm): ``piece(r)``
        builds what rank r needs for its share of the records (mvreml.backends.share; sent
        point to point, one rank at a time), ``ranges`` the ranks' pairs, ``stack`` whether
        an iterate broadcasts R^-1 by pattern (else it scatters the pairs' values), the
        extra (0-based) entries rank 0 gives besides its records (the G^-1 part, or the whole
        of a matrix given as such), and `perm` the pivot order (perm[k] = the k-th equation
        eliminated) or None.
        """
        from .share import LocalShare

        comm = self.comm
        if comm.rank == 0:
            n, piece, ranges, stack, rows, cols, perm = data
            if perm is not None:
                # ICNTL(7)=1: PERM_IN(i) = the position of equation i in the pivot order (1-based)
                self.perm_in = np.empty(n, dtype=np.int32)
                self.perm_in[np.asarray(perm)] = np.arange(1, n + 1, dtype=np.int32)
                self.ctx.id.perm_in = self.perm_in.__array_interface__["data"][0]
                self.ctx.set_icntl(7, 1)
            counts = np.array([hi - lo for lo, hi in ranges], dtype=np.int32)
            for r in range(1, comm.size):
                comm.send(piece(r), dest=r, tag=_DATA_TAG)
            self.share = LocalShare(piece(0))
            self.n_extra = len(rows)
            extra = (np.asarray(rows, dtype=np.int32) + 1, np.asarray(cols, dtype=np.int32) + 1)
        else:
            n, counts, stack = None, None, None
            self.share = LocalShare(comm.recv(source=0, tag=_DATA_TAG))
            self.n_extra = 0
            extra = (np.empty(0, np.int32), np.empty(0, np.int32))
        self.n, self.counts, self.stack = comm.bcast((n, counts, stack), root=0)
        self.irn_loc = np.concatenate([self.share.irn, extra[0]])
        self.jcn_loc = np.concatenate([self.share.jcn, extra[1]])
        self.a_loc = np.zeros(len(self.irn_loc))
        self.ctx.set_shape(self.n)
        self.ctx.set_distributed_assembled_rows_cols(self.irn_loc, self.jcn_loc)
        self.ctx.set_distributed_assembled_values(self.a_loc)
        status = self._run(1)
        if comm.rank == 0 and status >= 0:
            # SYM_PERM(i): the position of equation i in MUMPS's pivot order (1-based, host only);
            # `- 1` copies it: the array is MUMPS's and is freed with the instance
            import ctypes

            self.position = np.ctypeslib.as_array((ctypes.c_int * self.n).from_address(self.ctx.id.sym_perm)) - 1
        mine = np.array([self.ctx.get_info(15), self.ctx.get_info(17), len(self.irn_loc)], dtype=np.int64)
        per_rank = comm.gather(mine, root=0)
        if comm.rank != 0:
            return None
        return dict(status=status, info2=int(self.ctx.get_infog(2)), ranks=comm.size,
                    mb_per_rank=[int(x[0]) for x in per_rank], mb_per_rank_ooc=[int(x[1]) for x in per_rank],
                    entries_per_rank=[int(x[2]) for x in per_rank],
                    mb_max=int(self.ctx.get_infog(16)), mb_total=int(self.ctx.get_infog(17)),
                    factor_entries=_infog_count(self.ctx, 20))

    def assemble(self, data):
        """This rank's entries' values at an iterate (rank 0: dict of ``rstack`` or ``rinv``, the
        pairs' r_ab, and ``extra``, the values of its extra entries) into MUMPS's A_loc."""
        comm = self.comm
        data = data or {}
        if self.stack:
            vals = self.share.values(rstack=comm.bcast(data.get("rstack"), root=0))
        else:
            vals = self.share.values(rinv=self._scatter(data.get("rinv"), np.float64))
        k = len(vals)
        self.a_loc[:k] = vals
        if self.n_extra:
            self.a_loc[k:] = data["extra"]

    def factorize(self, data):
        """This rank's share of C (:meth:`assemble`), then JOB=2."""
        self.assemble(data)
        for _ in range(5):
            status = self._run(2)
            if status not in _WORKSPACE_ERRORS:
                break
            self.ctx.set_icntl(14, max(2 * self.ctx.get_icntl(14), 40))
        mine = np.array([self.ctx.get_info(16)], dtype=np.int64)
        per_rank = self.comm.gather(mine, root=0)
        if self.comm.rank != 0:
            return None
        return dict(status=status, info2=int(self.ctx.get_infog(2)), negative=int(self.ctx.get_infog(12)),
                    mantissa=float(self.ctx.get_rinfog(12)), exponent=int(self.ctx.get_infog(34)),
                    mb_per_rank=[int(x[0]) for x in per_rank])

    def gather(self, data, diagonal_only):
        """Rank 0: C's lower triangle as MUMPS was given it (every rank's entries, summed), or
        its diagonal alone; for the diagnosis of a failed factorization only."""
        keep = slice(None) if not diagonal_only else self.irn_loc == self.jcn_loc
        mine = (self.irn_loc[keep], self.jcn_loc[keep], self.a_loc[keep])
        parts = self.comm.gather(mine, root=0)
        if self.comm.rank != 0:
            return None
        irn, jcn, val = (np.concatenate(x) for x in zip(*parts))
        C = sp.coo_matrix((val, (irn.astype(np.int64) - 1, jcn.astype(np.int64) - 1)), shape=(self.n, self.n))
        return C.tocsc()          # duplicates summed, as MUMPS sums them

    def solve(self, rhs):
        """C^-1 rhs, rhs (n, k) Fortran-ordered on rank 0, overwritten there; JOB=3."""
        if self.comm.rank == 0:
            self.ctx.id.nrhs = rhs.shape[1]
            self.ctx.id.lrhs = self.n
            self._rhs = rhs            # MUMPS holds the address: keep the array alive
            self.ctx.id.rhs = rhs.__array_interface__["data"][0]
        status = self._run(3)
        return status if self.comm.rank == 0 else None

    def selected(self, pattern):
        """C^-1 at a pattern (rank 0: (indptr, indices) 0-based CSC, kept after the first call); JOB=3."""
        ctx = self.ctx
        if self.comm.rank == 0:
            if pattern is not None:
                ptr, idx = pattern
                self._sel = (np.asarray(ptr, dtype=np.int32) + 1, np.asarray(idx, dtype=np.int32) + 1,
                             np.zeros(len(idx)))
            ptr, idx, vals = self._sel
            ctx.id.nz_rhs = len(idx)
            ctx.id.nrhs = self.n
            ctx.id.lrhs = self.n
            ctx.id.irhs_ptr = ptr.__array_interface__["data"][0]
            ctx.id.irhs_sparse = idx.__array_interface__["data"][0]
            ctx.id.rhs_sparse = vals.__array_interface__["data"][0]
        ctx.set_icntl(30, 1)
        block = ctx.get_icntl(27)
        ctx.set_icntl(27, self.rhs_block)
        try:
            status = self._run(3)
        finally:
            ctx.set_icntl(30, 0)
            ctx.set_icntl(27, block)
        return (status, self._sel[2]) if self.comm.rank == 0 else None

    def close(self):
        """Free MUMPS's instance (JOB=-2: collective, every rank at once)."""
        if self.ctx is not None and not self.ctx.destroyed:
            self.ctx.destroy()
        self.ctx = None

    def abandon(self):
        """Drop the instance without MUMPS's collective JOB=-2 (the other ranks are gone)."""
        if self.ctx is not None:
            self.ctx.id = None
        self.ctx = None


mpi.FACTORIES["mumps"] = MumpsCore


def _infog_count(ctx, i: int) -> int:
    """An INFOG count that MUMPS gives negated in millions when it exceeds 2^31."""
    v = int(ctx.get_infog(i))
    return v if v >= 0 else -v * 1_000_000


class MumpsBackend(AssemblingBackend):
    """Rank 0's handle of a MUMPS instance spread over MPI.COMM_WORLD.

    Create it on rank 0 inside :func:`mpi.session` (``fit(backend="mumps")`` does) while
    the other ranks run :func:`mpi.serve`; on one process it runs MUMPS alone.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default MPI.COMM_WORLD.
    ordering : str or array of int
        CHOLMOD ordering whose pivot order MUMPS is given (ICNTL(7)=1), "mumps" for MUMPS's
        own automatic choice (ICNTL(7)=7), or the pivot order itself (perm[k] = the k-th
        equation eliminated).
    """

    name = "mumps"

    def __init__(self, comm=None, ordering="default"):
        self.ordering = ordering
        self.comm = comm if comm is not None else mpi.world()
        if self.comm.rank != 0:
            raise RuntimeError("MumpsBackend is rank 0's; the other ranks run mvreml.backends.mpi.serve")
        self.key, self.core = mpi.new_object(self.comm, "mumps")
        self.estimate = None
        self.last = None
        self._pattern = None
        self._perm = None
        self._setup = None           # how to give MUMPS C again (predict after the fit): see reopen
        self._pivots = None          # the pivot order of the analysis, kept for a reopening

    def _live(self):
        if self.core is None or self.core.ctx is None:
            from ..errors import FactorizationError

            raise FactorizationError("the MUMPS instance of this fit has ended with the fit (its MPI ranks "
                                     "have moved on): factorize again (mvreml.backends.reopened) first")
        return self.core

    def _check(self, status: int, step: str) -> None:
        if status < 0:
            from ..errors import FactorizationError

            raise FactorizationError(f"MUMPS {step} failed: INFOG(1) = {status}, INFOG(2) = "
                                     f"{self.core.ctx.get_infog(2)} (see the MUMPS user guide, section 8)")

    # -- the analysis: of a matrix given whole (rank 0's entries), or of the model's C assembled by the ranks
    def analyze(self, C):
        C = sp.csc_matrix(C)
        C.sort_indices()
        self._check_size(C.nnz)
        cols = np.repeat(np.arange(C.shape[0], dtype=np.int64), np.diff(C.indptr))
        ranges = [(0, 0)] * self.comm.size
        self._analyze(C.shape[0], C, lambda r: None, ranges, True, C.indices, cols)
        self._setup = None

    def analyze_model(self, model) -> None:
        """Analysis of the model's C as the ranks assemble it (mvreml.backends.share): the records'
        pairs split over the ranks (rank 0 none on more than one rank), the G^-1 part on rank 0."""
        from .share import pair_ranges, piece

        pat = model.pattern
        self._check_size(pat.nnz)
        stack = model.design.lattice is None       # as the engine: R^-1 by pattern, else a spatial r_ab
        ranges = pair_ranges(len(pat.pair_a), self.comm.size)
        # rank 0's extra entries: the positions of C's pattern the G^-1 maps reach
        gpos = np.unique(np.concatenate([np.asarray(M.indices, dtype=np.int64) for M in pat.M_G]
                                        or [np.empty(0, np.int64)]))
        gcols = np.searchsorted(np.asarray(pat.indptr, dtype=np.int64), gpos, side="right") - 1
        pattern = sp.csc_matrix((np.ones(pat.nnz), pat.indices, pat.indptr), shape=(pat.n_eq, pat.n_eq))
        self._analyze(pat.n_eq, pattern, lambda r: piece(model, *ranges[r], stack), ranges, stack,
                      pat.indices[gpos], gcols)
        self._setup = (model, gpos)

    def _check_size(self, nnz: int) -> None:
        if nnz >= np.iinfo(np.int32).max:
            from ..errors import FactorizationError

            raise FactorizationError(f"the mixed-model equations have {nnz:,} nonzeros in their lower "
                                     "triangle: beyond the 32-bit entry counts of PyMUMPS (NZ_loc)")

    def _analyze(self, n, pattern, piece, ranges, stack, rows, cols):
        perm = self._pivots if self._pivots is not None else self._ordering(pattern)
        self._pivots = perm
        est = mpi.call(self.comm, self.key, self.core, "analyze", (n, piece, ranges, stack, rows, cols, perm))
        self._check(est["status"], "analysis")
        est["message"] = (f"MUMPS analysis on {est['ranks']} rank(s): the factorization will need about "
                          f"{est['mb_max']} MB on the largest rank, {est['mb_total']} MB in all "
                          f"(per rank: {', '.join(str(m) for m in est['mb_per_rank'])} MB; "
                          f"{est['factor_entries']:,} entries in the factor)")
        self.estimate = est

    def _ordering(self, C):
        if not isinstance(self.ordering, str):
            return np.asarray(self.ordering, dtype=np.int64)     # a pivot order given by the caller
        return None if self.ordering == "mumps" else pivot_order(C, self.ordering)

    def memory_estimate(self):
        return self.estimate

    # -- numeric factorization
    def factorize(self, C) -> float:
        self._live()
        C = sp.csc_matrix(C)
        C.sort_indices()
        return self._factorize({"extra": np.ascontiguousarray(C.data, dtype=float)})

    def factorize_assembly(self, parts) -> float:
        """Numeric factorization of the model's C at `parts` (a :class:`~.base.Assembly`): the
        ranks assemble it, rank 0 sends R^-1 by pattern (or the pairs' r_ab) and adds G^-1."""
        if self.core is None:
            self.reopen()
        model, gpos = self._setup
        g = np.zeros(model.pattern.nnz)
        for M, Gi in zip(model.pattern.M_G, parts.ginvs):
            g += M @ np.ascontiguousarray(Gi).ravel()
        data = {"extra": g[gpos]}
        if self.core.stack:
            data["rstack"] = parts.rstack
        else:
            data["rinv"] = parts.rinv_pairs
        return self._factorize(data)

    def _factorize(self, data) -> float:
        out = mpi.call(self.comm, self.key, self._live(), "factorize", data)
        self.last = out
        status = out["status"]
        if status >= 0 and self.estimate is not None and "mb_used_per_rank" not in self.estimate:
            # INFO(16): what the first factorization took, beside the analysis's forecast
            self.estimate["mb_used_per_rank"] = out["mb_per_rank"]
            log.info("MUMPS factorization: %s MB per rank", ", ".join(str(m) for m in out["mb_per_rank"]))
        if status == -10 or (status >= 0 and (out["negative"] > 0 or out["mantissa"] <= 0)):
            raise NotPositiveDefinite(f"{out['negative']} negative pivot(s), INFOG(1) = {status}",
                                      self._failed_column())
        self._check(status, "factorization")
        return float(np.log(out["mantissa"]) + out["exponent"] * _LOG2)

    def _failed_column(self) -> int | None:
        """The equation at which C stops being positive definite, from C as the ranks gave it."""
        small = self.core.n <= DIAGNOSE_MAX_EQUATIONS
        return _failed_column(mpi.call(self.comm, self.key, self.core, "gather", None, not small), small)

    def reopen(self) -> None:
        """A new MUMPS instance on the ranks for the model of the last analysis, analysed again
        with the same pivot order (the fit's instance ends with the fit; predict needs one)."""
        if self._setup is None:
            from ..errors import FactorizationError

            raise FactorizationError("this MUMPS backend has no model to analyse again")
        self.key, self.core = mpi.new_object(self.comm, "mumps")
        self._fresh = True
        self.analyze_model(self._setup[0])

    def solve(self, B):
        X, vector = as_dense_rhs(B, self._live().n)
        if X.shape[1]:
            self._check(mpi.call(self.comm, self.key, self.core, "solve", X), "solve")
        return X.ravel() if vector else X

    def set_pattern(self, rows, cols, orient: bool = True):
        """The pairs of C^-1 wanted (original order, either triangle, repeats allowed).

        Each unordered pair is requested from MUMPS once, as the entry whose column is the
        equation eliminated first (`orient`; False requests each pair as given, once, for the
        benchmark of the two). MUMPS computes column j of C^-1 at the requested rows by a forward solve
        with e_j, which runs from j to the root of the elimination tree, then a backward
        solve down to each requested row: rows that are ancestors of j (eliminated after it;
        every pair of C's pattern is an ancestor and a descendant) keep both solves on j's
        path, whereas a row eliminated before j sends the backward solve into j's subtrees.
        ``selected_inverse`` returns the values in the order of `rows`, `cols`.
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        n = self._live().n
        if orient and self.core.position is not None:
            pos = self.core.position
            swap = pos[rows] < pos[cols]
            rows, cols = np.where(swap, cols, rows), np.where(swap, rows, cols)
        # each pair once, column by column (MUMPS's sparse right-hand side); self._perm maps
        # the requested entries back to the caller's pairs
        keys, self._perm = np.unique(cols * n + rows, return_inverse=True)
        ucols, urows = np.divmod(keys, n)
        ptr = np.concatenate([[0], np.cumsum(np.bincount(ucols, minlength=n))])
        self._pattern = (ptr, urows)
        self._fresh = True

    def selected_inverse(self):
        self._live()
        pattern = self._pattern if self._fresh else None
        status, vals = mpi.call(self.comm, self.key, self.core, "selected", pattern)
        self._fresh = False
        self._check(status, "selected inversion (ICNTL(30))")
        return vals[self._perm]

    def close(self):
        if self.core is not None:
            if mpi.active() or self.comm.size == 1:
                mpi.delete(self.comm, self.key, self.core)
            else:
                self.core.abandon()
            self.core = None


def _failed_column(C, factorize: bool = True) -> int | None:
    """The equation at which C stops being positive definite, as CHOLMOD would name it.

    MUMPS counts the negative pivots but does not say where they are. A non-positive diagonal
    entry names itself; otherwise, when `factorize` (C of moderate order), a CHOLMOD
    factorization of C on rank 0 finds the column (only after MUMPS failed: it costs one
    sequential factorization).
    """
    d = C.diagonal()
    bad = np.flatnonzero(~(d > 0))
    if len(bad):
        return int(bad[0])
    if not factorize:
        return None
    from .cholmod import CholmodBackend

    diag = CholmodBackend()
    try:
        diag.analyze(C)
        diag.factorize(C)
    except NotPositiveDefinite as exc:
        return exc.column
    except Exception:               # the diagnosis is a courtesy: MUMPS's failure stands
        return None
    return None


def pivot_order(C, ordering: str = "default") -> np.ndarray:
    """The fill-reducing pivot order of C (perm[k] = the k-th equation eliminated) from CHOLMOD's
    symbolic analysis: AMD / METIS, as the CHOLMOD path orders.

    Debian's MUMPS is built with neither METIS nor SCOTCH: its automatic choice falls to PORD,
    which takes minutes on a pedigree's equations that AMD orders in seconds. A simplicial
    analysis computes the ordering and the column counts only, no factor pattern.
    """
    from ..cholmod import analyze

    t0 = time.perf_counter()
    perm = np.asarray(analyze(C, mode="simplicial", ordering_method=ordering).P())
    log.info("ordering of the equations for MUMPS (CHOLMOD %r): %.1f s", ordering, time.perf_counter() - t0)
    return perm
