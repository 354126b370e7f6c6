"""Linear-algebra backends of the REML engine: CHOLMOD (default) and MUMPS over MPI.

``fit(..., backend="cholmod")`` runs the engine's own CHOLMOD path (``mvreml.likelihood``);
``backend="mumps"`` puts MUMPS (:mod:`.mumps`) behind the interface of :mod:`.base`, with
the ranks of MPI.COMM_WORLD other than 0 serving rank 0 (:mod:`.mpi`).
"""
from __future__ import annotations

from ..errors import ArgumentError
from .base import Backend, NotPositiveDefinite, equation_label, factorize_model

BACKENDS = ("cholmod", "mumps")

__all__ = ["BACKENDS", "Backend", "NotPositiveDefinite", "check", "equation_label", "factorize_model", "make"]


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
