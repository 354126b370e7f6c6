"""The forecast of a fit: sizes from the symbolic analysis, memory and time per iterate.

``forecast(model, threads)`` runs the engine's own symbolic analysis of C (CHOLMOD, the
ordering of the fit), counts the columns of L and CHOLMOD's supernodes from the pattern
(``mvreml.symbolic``) and turns them into bytes and seconds; ``check(plan)`` refuses a fit
whose forecast is above the memory available with a :class:`~mvreml.errors.ResourceError`.
The analysis is handed to the model, so a fit that goes on does not analyse C twice.

What the memory forecast counts (bytes, per iterate, on top of the process as it is once
the design and the MME maps exist, which ``rss_now`` measures):

- **C**: the values of the lower triangle (nnz(C) doubles), twice: the assembled array and
  the temporary of its sum;
- **L**: the numeric factor as CHOLMOD stores it: supernodal, the dense block of every
  relaxed supernode (upper triangles of the diagonal blocks and relaxed zeros included) and
  its row indices; simplicial, nnz(L) values and row indices;
- **selected inverse**: what the engine's selected inverse holds besides the factor: nothing
  when it overwrites the factor (mvreml.chol, the default), one array of the factor's lower
  entries when the model keeps its factor for later solves (the factor formulation of fa);
- **selected-inverse positions**: where each entry of C lies in the factor (8 bytes a pair,
  kept), made from C's rows and columns at the first factorization (16 bytes a pair, then
  freed); each evaluation's C^-1 values on C's pattern take the place of the latter;
- **working variates**: the N x n_theta working variates and their R^-1 product, and the
  P x n_theta right-hand sides of the average information and their solutions;
- **fixed-effect covariance**: the result's (X'V^-1X)^-1 when p <= 500, by p sparse solves
  whose columns fill (n_eq x p values and row indices): the peak of small fits.

The peak forecast is ``max(peak so far, rss_now + the sum above)``. The time per iterate is
one numeric factorization (``factorization_seconds``: flops and stored entries at the
measured dgemm speeds), the selected inverse (``SELINV_RELATIVE`` factorizations) and
2 (1 + n_theta) triangular solves; the dgemm speeds are measured once per process and
number of threads.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from . import _memory
from .errors import ResourceError
from .symbolic import factor_sizes

#: the supernodal factorization's time model (``factorization_seconds``), fitted on the
#: benchmark problems B-S, T-S, U-M, B-M, T-M (one BLAS thread, a shared machine)
FACTOR_EFFICIENCY = 0.34        # of the widest dgemm's speed, for the flops
ENTRY_PASSES = 33.0             # stored entries of L, at the rank-1 product's speed
#: seconds of the engine's selected inverse (in place over the supernodes, mvreml.chol) per second
#: of numeric factorization, measured on U-M 0.36-0.58, B-M 0.70-0.80, T-M and U-L ~1.0 (one thread)
SELINV_RELATIVE = 0.8
SIMPLICIAL_RATE = 0.25e9        # flops per second of simplicial (scalar) elimination
SOLVE_RATE = 0.5e9              # entries of L per second of a triangular solve (memory bound)
FIXED_VCOV_MAX_P = 500          # fixed effects up to which the result has their covariance (report.py)
DGEMM_SIZE = 256                # rows and columns of the calibration products
DGEMM_WIDTHS = (1, 256)                 # their inner dimensions: rank-1 (touching entries), wide
_GFLOPS: dict[int, np.ndarray] = {}     # threads -> measured GFLOP/s per width (once per process)


def blas_gflops(threads: int = 1) -> np.ndarray:
    """dgemm speed of this machine in GFLOP/s on ``threads`` BLAS threads, measured once per
    process and number of threads, for an inner dimension of each of ``DGEMM_WIDTHS``.

    A 256 x w by w x 256 product for w = 1 (the speed of touching entries, as the gathers
    and scatters of narrow supernodes do) and w = 256 (the arithmetic of wide ones). Each
    is repeated for 20 ms on the machine as it is now (a busy machine is slower, and the
    forecast with it); ~0.05 s in all.
    """
    if threads in _GFLOPS:
        return _GFLOPS[threads]
    from ._threads import blas_threads

    m = DGEMM_SIZE
    rng = np.random.default_rng(0)
    out = []
    with blas_threads(threads):
        for w in DGEMM_WIDTHS:
            a, b = rng.standard_normal((m, w)), rng.standard_normal((w, m))
            a @ b                               # first call: thread start-up, page faults
            done, t0 = 0, time.perf_counter()
            while True:
                a @ b
                done += 1
                elapsed = time.perf_counter() - t0
                if elapsed > 0.02:
                    break
            # the sustained rate, not the best product: on a shared machine the time slices
            # given to other processes count, as they will during the fit
            out.append(2.0 * m * m * w * done / elapsed / 1e9)
    _GFLOPS[threads] = np.maximum.accumulate(np.array(out))
    return _GFLOPS[threads]


def factorization_seconds(sizes, gflops: np.ndarray) -> float:
    """Seconds of one numeric factorization.

    Supernodal: the flops at ``FACTOR_EFFICIENCY`` of the widest product's speed, plus the
    stored entries of L touched ``ENTRY_PASSES`` times at the speed of the rank-1 product
    (2 flops an entry): pedigree factors have many narrow supernodes, whose gathers and
    scatters cost more than their arithmetic. The two constants are fitted to the measured
    factorizations of the benchmark problems B-S .. T-M (within 30%, see RESULTS.md).
    Simplicial: the flops at ``SIMPLICIAL_RATE``.
    """
    if not sizes.supernodal:
        return sizes.flops / SIMPLICIAL_RATE
    return float(sizes.flops / (gflops[-1] * 1e9 * FACTOR_EFFICIENCY)
                 + ENTRY_PASSES * sizes.super_values / (gflops[0] * 1e9 / 2.0))


def _engine_selinv_copies(model=None) -> float:
    """Copies of L's entries held by the engine's selected inverse besides the factor: none
    when it overwrites the factor (mvreml.chol, the default), one buffer when the model keeps
    the factor for later solves (``selinv_in_place = False``: the factor formulation of fa)."""
    return 0.0 if getattr(model, "selinv_in_place", True) else 1.0


def _pattern_matrix(pattern) -> sp.csc_matrix:
    """The lower triangle of C with ones for values: what the symbolic analysis reads."""
    n = pattern.n_eq
    return sp.csc_matrix((np.ones(pattern.indices.size), pattern.indices, pattern.indptr), shape=(n, n))


def _analyze(model):
    """The engine's symbolic analysis of C (the one its first factorization would run)."""
    from .chol import SupernodalFactor
    from .likelihood import ENGINE_ORDERING

    return SupernodalFactor(_pattern_matrix(model.pattern),
                            ordering=ENGINE_ORDERING.get(model.ordering, model.ordering))


def memory_parts(sizes, nnz_c: int, n_obs: int, n_eq: int, n_theta: int, p: int = 0,
                 selinv_copies: float = 0.0) -> dict:
    """Bytes of each part counted by the forecast (see the module notes)."""
    from .likelihood import _SOLVE_BLOCK

    idx = 8                                     # the engine's cholmod_l_* binding: 64-bit indices
    if sizes.supernodal:
        factor = 8 * sizes.super_values + idx * sizes.super_index
        lower = sizes.super_lower
    else:
        factor = (8 + idx) * sizes.nnz_l
        lower = sizes.nnz_l
    index_bytes = 4 if max(lower, sizes.n) < 2 ** 31 else 8
    return {
        "C": 2 * 8 * nnz_c,
        "L": factor + 8 * sizes.n,
        "selected inverse": int(selinv_copies * (8 + index_bytes) * lower),
        # where each entry of C lies in the factor (kept: 8 bytes a pair), made at the first
        # factorization from C's rows and columns (two int64 temporaries); later, each
        # evaluation's C^-1 values on the pairs (8 bytes a pair) beside the positions
        "selected-inverse positions": 24 * nnz_c,
        "working variates": 8 * 2 * (n_obs + n_eq) * n_theta,
        # the result's (X'V^-1X)^-1: read from the selected inverse, or solved in dense blocks
        # of at most _SOLVE_BLOCK entries (likelihood.fixed_vcov)
        "fixed-effect covariance": 8 * min(n_eq * p, _SOLVE_BLOCK) if 0 < p <= FIXED_VCOV_MAX_P else 0,
    }


def seconds_parts(sizes, n_theta: int, gflops: np.ndarray) -> dict:
    """Seconds of each step of one iterate (see the module notes)."""
    fact = factorization_seconds(sizes, gflops)
    lower = sizes.super_lower if sizes.supernodal else sizes.nnz_l
    return {
        "factorization": fact,
        "selected inverse": fact * SELINV_RELATIVE,
        "solves": 2.0 * (1 + n_theta) * lower / SOLVE_RATE,
    }


class Plan:
    """What a fit will need: sizes of the equations and the factor, memory and time.

    Built by :func:`mvreml.plan` (or by ``fit`` before its first factorization).

    Attributes
    ----------
    equations : int
        Order of the mixed-model equations C.
    nnz_c : int
        Entries of the lower triangle of C (diagonal included).
    nnz_l : int
        Entries of the Cholesky factor L (exact fill, diagonal included).
    nnz_l_stored : int
        Values CHOLMOD stores for L: supernodal, the dense supernode blocks (relaxed zeros
        and the upper triangles of the diagonal blocks included); simplicial, ``nnz_l``.
    flops : float
        sum_j cc_j^2 over the column counts cc_j of L: the work of one numeric
        factorization as CHOLMOD counts it.
    supernodal : bool
        Whether CHOLMOD will factorize supernodally (flops / nnz(L) >= 40).
    memory : dict
        Bytes of each part counted (C, L, selected inverse, working variates, the result's
        fixed-effect covariance; see the notes of ``mvreml._forecast``).
    rss_now, peak_so_far : int
        The process's resident memory when the forecast was made, and its peak so far.
    peak_bytes : int
        The forecast peak resident memory of the fit.
    available_bytes : int or None
        Memory this process could still allocate (MemAvailable, the cgroup's room).
    seconds : dict
        Seconds of each step of one iterate; ``seconds_per_iterate`` their sum.
    gflops : numpy.ndarray
        The measured dgemm speed (GFLOP/s) for inner dimensions ``DGEMM_WIDTHS``.
    threads : int
        The fit's BLAS threads.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def seconds_per_iterate(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def extra_bytes(self) -> int:
        """Memory the iterates add to the process (the sum of ``memory``)."""
        return int(sum(self.memory.values()))

    @property
    def fits_in_memory(self) -> bool | None:
        """Whether the memory the iterates add fits into what is available (None: unknown)."""
        return None if self.available_bytes is None else self.extra_bytes <= self.available_bytes

    def summary(self) -> dict:
        """The forecast as plain numbers (``result.model["forecast"]``, JSON-able)."""
        out = {k: getattr(self, k) for k in ("equations", "nnz_c", "nnz_l", "nnz_l_stored", "flops",
                                             "supernodal", "n_supernodes", "rss_now", "peak_bytes",
                                             "available_bytes")}
        out["memory"] = dict(self.memory)
        if self.seconds:
            out["seconds"] = dict(self.seconds)
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in out.items()}

    def __repr__(self) -> str:
        h = _memory.human
        kind = "supernodal" if self.supernodal else "simplicial"
        rows = [
            ("equations", f"{self.equations:,}"),
            ("observations x parameters", f"{self.n_obs:,} x {self.n_theta}"),
            ("nnz(C) (lower)", f"{self.nnz_c:,}"),
            ("nnz(L)", f"{self.nnz_l:,} ({kind}: {self.nnz_l_stored:,} stored, "
                       f"{self.n_supernodes:,} supernodes)"),
            ("flops / factorization", f"{self.flops:.3g} (sum of squared column counts)"),
        ]
        rows += [(f"  memory: {k}", h(v)) for k, v in self.memory.items()]
        rows += [
            ("process now / peak so far", f"{h(self.rss_now)} / {h(self.peak_so_far)}"),
            ("forecast peak memory", h(self.peak_bytes)),
            ("memory available", h(self.available_bytes)),
        ]
        if self.seconds:
            rows += [
                ("seconds per iterate", f"{self.seconds_per_iterate:.3g} (factorization "
                                        f"{self.seconds['factorization']:.3g}, selected inverse "
                                        f"{self.seconds['selected inverse']:.3g}, solves "
                                        f"{self.seconds['solves']:.3g})"),
                ("BLAS", f"dgemm {self.gflops[0]:.2g} to {self.gflops[-1]:.3g} GFLOP/s (inner "
                         f"dimension {DGEMM_WIDTHS[0]} to {DGEMM_WIDTHS[-1]}) on {self.threads} "
                         "thread(s)"),
            ]
        width = max(len(k) for k, _ in rows)
        return "Plan\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def forecast(model, threads: int = 1, *, timer=None, analysis=True, timing=True) -> Plan:
    """Forecast of a fit of ``model`` (a REMLModel) on ``threads`` BLAS threads.

    The symbolic analysis is the engine's own (its ordering, its mode); it is stored in the
    model (``model.factor``) unless one is there already, so a fit that goes on reuses it.
    ``analysis=False`` skips it (the identity ordering: sizes of the natural order).
    ``timing=False`` skips the dgemm calibration (~0.1 s; the fit's memory check does not
    need it): ``seconds`` is then empty and ``gflops`` None.
    """
    from ._timing import Timer

    timer = timer if timer is not None else Timer()
    pattern = model.pattern
    if not analysis:
        perm = np.arange(pattern.n_eq)
    else:
        factor = model.factor
        if factor is None:
            with timer("symbolic"):
                factor = _analyze(model)
            model.factor = factor
        perm = np.asarray(factor.P())     # mvreml.chol orders at its analysis, before any factorization
    with timer("plan"):
        sizes = factor_sizes(pattern.indptr, pattern.indices, perm)
    from .chol import THREADED_FLOPS

    # below THREADED_FLOPS the factor's numeric work runs on one thread whatever `threads` says
    gflops = blas_gflops(threads if sizes.flops >= THREADED_FLOPS else 1) if timing else None
    n_theta = int(model.n_theta)
    memory = memory_parts(sizes, pattern.nnz, model.N, pattern.n_eq, n_theta, int(model.p),
                          selinv_copies=_engine_selinv_copies(model))
    rss = _memory.rss_bytes() or 0
    peak_so_far = _memory.peak_rss_bytes()
    return Plan(
        equations=int(pattern.n_eq), nnz_c=int(pattern.nnz), nnz_l=sizes.nnz_l,
        nnz_l_stored=sizes.super_values if sizes.supernodal else sizes.nnz_l,
        flops=sizes.flops, supernodal=sizes.supernodal, n_supernodes=sizes.n_supernodes,
        n_obs=int(model.N), n_theta=n_theta, memory=memory, rss_now=rss, peak_so_far=peak_so_far,
        peak_bytes=int(max(peak_so_far, rss + sum(memory.values()))),
        available_bytes=_memory.available_bytes(),
        seconds=seconds_parts(sizes, n_theta, gflops) if timing else {},
        gflops=gflops, threads=int(threads), ordering=model.ordering, sizes=sizes)


def check(plan: Plan) -> None:
    """Refuse a fit whose iterates need more memory than is available.

    Raises
    ------
    ResourceError
        Naming the forecast, the memory available and what to do instead.
    """
    if plan.fits_in_memory is not False:
        return
    h = _memory.human
    raise ResourceError(
        f"this fit needs about {h(plan.extra_bytes)} more memory than the process holds now "
        f"(forecast peak {h(plan.peak_bytes)}: the Cholesky factor of {plan.equations:,} "
        f"equations with {plan.nnz_l:,} entries {h(plan.memory['L'])}, its selected inverse "
        f"{h(plan.memory['selected inverse'] + plan.memory['selected-inverse positions'])}, C {h(plan.memory['C'])}, working variates "
        f"{h(plan.memory['working variates'])}), but only {h(plan.available_bytes)} is "
        "available (MemAvailable and the cgroup limit); the kernel would kill the fit "
        "part-way. Fit fewer traits or random terms, a smaller model (fewer animals or "
        "levels), or the distributed-memory backend (backend=\"mumps\") on a machine with "
        "more memory; check_memory=False fits anyway",
        needed=plan.extra_bytes, available=plan.available_bytes, plan=plan)


def before_fit(model, threads: int) -> dict:
    """The check a fit makes before its first numeric work: the symbolic analysis it needs
    anyway (kept in the model), the forecast, and ResourceError when it is above the memory
    available (:func:`check`). Returns the forecast as plain numbers (``Result.model["forecast"]``;
    the column counts are not kept)."""
    plan = forecast(model, threads, timer=model.timer, timing=False)
    check(plan)
    return plan.summary()


def check_memory_option(value) -> bool:
    """``check_memory=`` of fit: a bool (ArgumentError otherwise)."""
    from .errors import ArgumentError

    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"check_memory= takes True or False, not {value!r}", argument="check_memory")
    return bool(value)
