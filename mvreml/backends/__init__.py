"""Linear-algebra backends of the REML engine: CHOLMOD (default) and MUMPS over MPI.

``fit(..., backend="cholmod")`` runs the engine's own CHOLMOD path (``mvreml.likelihood``);
``backend="mumps"`` puts MUMPS (:mod:`.mumps`) behind the interface of :mod:`.base`, with
the ranks of MPI.COMM_WORLD other than 0 serving rank 0 (:mod:`.mpi`).
"""
from __future__ import annotations

from contextlib import contextmanager

from ..errors import ArgumentError, ModelError
from .base import AssemblingBackend, Assembly, Backend, NotPositiveDefinite, equation_label, factorize_model
from .mpi import collective

BACKENDS = ("cholmod", "mumps")

__all__ = ["BACKENDS", "AssemblingBackend", "Assembly", "Backend", "NotPositiveDefinite", "check", "collective", "equation_label",
           "factorize_model", "make", "reopened"]


def check(name) -> str:
    """`name` if it is a known backend, else an ArgumentError listing them."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ArgumentError(f"backend={name!r} is not a linear-algebra backend; known: {', '.join(BACKENDS)}",
                            argument="backend")
    return name


def make(name: str, ordering: str = "default"):
    """The engine's backend object for `name`: None for CHOLMOD (the engine's own path).

    `ordering` is the fit's CHOLMOD ordering; MUMPS is given the same pivot order.
    """
    if check(name) == "cholmod":
        return None
    from .mumps import MumpsBackend

    return MumpsBackend(ordering=ordering)


@contextmanager
def reopened(model, what: str = "this"):
    """A fitted model's backend able to factorize again, for the duration of the block.

    A MUMPS fit's instance ends with the fit (its ranks return from ``fit``). On one process
    a new instance is made here (analysed again, same pivot order) and freed on leaving; on
    more ranks only when the ranks serve again, i.e. inside
    ``mvreml.backends.collective(lambda: res.predict(...))`` run on every rank.

    Raises
    ------
    ModelError
        After a fit on more than one rank, outside such a collective call.
    """
    backend = getattr(model, "backend", None)
    if backend is None or not hasattr(backend, "reopen") or backend.core is not None:
        yield
        return
    from . import mpi

    comm = backend.comm
    if comm.size > 1 and not mpi.active():
        raise ModelError(f"{what} needs the fit's MUMPS backend again, and the fit ran on {comm.size} MPI "
                         "ranks, which have returned from it: call it on every rank inside "
                         "mvreml.backends.collective(lambda: res.predict(...)) (rank 0 computes, the "
                         "others serve; they get None)")
    model.factor_theta = None          # the fit's factor has gone with its instance
    with mpi.session(comm):
        try:
            yield
        finally:
            backend.close()
            model.factor_theta = None
