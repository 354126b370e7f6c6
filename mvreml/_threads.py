"""BLAS threads of a fit, set by the engine itself (threadpoolctl), not by the environment.

Measured on a 2-core machine: with OpenBLAS's default threads a small fit slows down 30-50x
when another process holds a core (0.11 s -> 3-6 s), because the threads of every small dense
product wait for each other. Small mixed-model equations therefore run on one thread; large
ones (where CHOLMOD's supernodes are big enough to share) on the cores this process may use.
"""
from __future__ import annotations

import os
import sys
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


_pools = {"controller": None, "modules": -1}


def _controller():
    """threadpoolctl's list of the process's BLAS / OpenMP pools, kept between calls.

    Listing the pools reads the process's memory map and the libraries (5-7 ms on a loaded
    2-core machine): done per call it was a tenth of a refit of a small model (one per fit
    and one per selected inverse). The list is made again when modules were imported since
    (a new extension may bring its own BLAS); CHOLMOD's is loaded first so that it is listed.
    """
    from . import chol  # noqa: F401  (loads CHOLMOD and the BLAS it links)

    n_modules = len(sys.modules)
    if _pools["controller"] is None or _pools["modules"] != n_modules:
        from threadpoolctl import ThreadpoolController

        _pools["controller"] = ThreadpoolController()
        _pools["modules"] = n_modules
    return _pools["controller"]


@contextmanager
def blas_threads(n: int):
    """Limit every BLAS / OpenMP pool loaded in the process (numpy's, CHOLMOD's) to n threads."""
    with _controller().limit(limits=n):
        yield
