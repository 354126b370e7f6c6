"""BLAS threads of a fit, set by the engine itself (threadpoolctl), not by the environment.

Measured on a 2-core machine: with OpenBLAS's default threads a small fit slows down 30-50x
when another process holds a core (0.11 s -> 3-6 s), because the threads of every small dense
product wait for each other. Small mixed-model equations therefore run on one thread; large
ones (where CHOLMOD's supernodes are big enough to share) on the cores this process may use.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from .errors import ArgumentError

#: equations below which one thread is faster than several (small dense blocks only)
SMALL_MME = 20_000


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose(threads, n_equations: int) -> int:
    """The number of BLAS threads for a fit: ``threads`` if given, else 1 for small equations
    and the available cores for large ones (never more than the cores: oversubscription is
    what collapses the speed)."""
    if threads is None:
        return 1 if n_equations < SMALL_MME else available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentError(f"threads={threads!r}: give a positive number of BLAS threads (or None)",
                            argument="threads")
    return min(threads, available_cores())


_SCAN: tuple | None = None     # (len(sys.modules) at the scan, threadpoolctl's controller)


def _controller():
    """threadpoolctl's view of the thread pools loaded in the process, scanned again only when
    modules were imported since (a new BLAS or OpenMP comes with an extension module): a scan
    walks every loaded library (200+ with pandas and scipy), 3-12 ms, and the engine sets its
    limits at every factorization and selected inverse (11 % of a 20k-equation fit's CPU)."""
    global _SCAN
    import sys

    from . import chol  # noqa: F401  (loads CHOLMOD and the BLAS it links, so that they are listed)

    if _SCAN is None or _SCAN[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _SCAN = (len(sys.modules), ThreadpoolController())
    return _SCAN[1]


def _openmp_runtimes() -> list:
    """ctypes handles of the OpenMP runtimes loaded (CHOLMOD's libgomp)."""
    return [lib.dynlib for lib in _controller().select(user_api="openmp").lib_controllers]


@contextmanager
def openmp_within_limit():
    """Hold the OpenMP teams of the calls inside to the thread limit in force (`blas_threads`).

    CHOLMOD 3 (SuiteSparse 5) scatters the updates of its supernodal factorization in
    ``parallel for num_threads(4)`` loops: a team of 4 whatever ``omp_set_num_threads`` (what
    threadpoolctl sets) says. Measured on U-M (2 cores, one BLAS thread): 0.38 s of CPU per
    factorization with those teams, 0.19-0.24 s without, the same numbers (each thread scatters
    its own rows). One thread allowed: no team at all (max-active-levels 0); more: OpenMP's
    dynamic adjustment, which caps a team at the limit and, in libgomp, at the cores minus the
    15-minute load average (at least 1): on a busy machine CHOLMOD's scatter runs on one thread.
    """
    runtimes = _openmp_runtimes()
    saved = []
    for rt in runtimes:
        if rt.omp_get_max_threads() <= 1:
            saved.append((rt.omp_set_max_active_levels, rt.omp_get_max_active_levels()))
            rt.omp_set_max_active_levels(0)
        else:
            saved.append((rt.omp_set_dynamic, rt.omp_get_dynamic()))
            rt.omp_set_dynamic(1)
    try:
        yield
    finally:
        for setter, value in saved:
            setter(value)


_IN_FORCE: list = []     # the limits blas_threads has set, innermost last


@contextmanager
def blas_threads(n: int):
    """Limit every BLAS / OpenMP pool loaded in the process (numpy's, CHOLMOD's) to n threads.

    A limit already in force (the fit's, around each factorization) is not set again.
    """
    if _IN_FORCE and _IN_FORCE[-1] == n:
        yield
        return
    with _controller().limit(limits=n):
        _IN_FORCE.append(n)
        try:
            yield
        finally:
            _IN_FORCE.pop()


_FIT: list = []          # the thread counts of the fits in progress, innermost last


@contextmanager
def fit_threads(n: int):
    """The BLAS threads of a fit: `n` for the numeric work of a large factor (its factorization,
    selected inverse and forward solves, :func:`mvreml.chol._threads_for`), one thread for all
    else. The steps' small dense products, eigen-decompositions and solves (a 247-parameter AI
    matrix, 3 x 3 blocks) gain nothing from threads and lose most when another process holds
    a core: on MET-M with a second process busy, 81 eigh of 247 x 247 took 5.2 s on two threads.
    """
    _FIT.append(int(n))
    try:
        with blas_threads(1):
            yield
    finally:
        _FIT.pop()


def large_work_threads() -> int | None:
    """The threads of the fit in progress for the numeric work of a large factor (None outside
    a fit: the limit in force then applies)."""
    return _FIT[-1] if _FIT else None
