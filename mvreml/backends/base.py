"""The linear algebra the REML engine needs from a sparse direct solver, as one interface.

An iterate of AI-REML needs, for the mixed-model equations C (symmetric positive definite,
its pattern fixed for the whole fit): a numeric factorization, log|C|, solves C x = b for a
few right-hand sides, and the entries of C^-1 on the pattern of C (docs/THEORY.md, "Score"
and "Selected inverse"). A :class:`Backend` provides exactly that:

- ``analyze(C)`` once (the ordering and the symbolic factorization; C gives the pattern),
- ``factorize(C)`` at every iterate, returning log|C| or raising
  :class:`NotPositiveDefinite` with the equation at fault when it knows it,
- ``solve(B)``,
- ``set_pattern(rows, cols)`` once and ``selected_inverse()`` after each factorization.

A backend that assembles C itself, distributed over its processes (``assembles = True``:
MUMPS, :mod:`.share`), is given the model once (``analyze_model``) and, at each iterate,
the few small matrices C is linear in (:class:`Assembly`: R^-1 by missing-value pattern
and the terms' G^-1) instead of C (``factorize_assembly``).

:func:`factorize_model` is the one place the engine (``mvreml.likelihood``) calls a backend:
it analyses on the first call, turns a failure into the engine's ``Infeasible`` naming the
equation (fixed effect, or term, level and trait), and hands the engine a solve and a
selected inverse shaped like the CHOLMOD factor and :class:`mvreml.selinv.SelectedInverse`
it uses otherwise.
"""
from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

log = logging.getLogger("mvreml")

__all__ = ["AssemblingBackend", "Assembly", "Backend", "NotPositiveDefinite", "equation_label", "factorize_model"]


@dataclass
class Assembly:
    """What C is at one iterate, for a backend that assembles it: C = W'R^-1 W + G^-1 part.

    Attributes
    ----------
    rinv_pairs : np.ndarray
        The entries r_ab of R^-1 for the pattern's pairs of records (weighted).
    rstack : np.ndarray or None
        R^-1 by missing-value pattern (patterns x t x t), from which ``rinv_pairs`` is read;
        None for a spatial residual.
    ginvs : list of np.ndarray
        G_k^-1 of every random term (t_k x t_k).
    """

    rinv_pairs: np.ndarray
    rstack: np.ndarray | None
    ginvs: list


class NotPositiveDefinite(Exception):
    """C is not (numerically) positive definite; `column` is the equation at fault when known."""

    def __init__(self, detail: str, column: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.column = column


class Backend(abc.ABC):
    """A sparse symmetric positive definite solver behind the REML engine.

    Subclasses implement the five abstract methods below; :attr:`name` is what ``fit(backend=)``
    takes. The pattern of C passed to :meth:`factorize` is that given to :meth:`analyze`.
    """

    name = "abstract"
    #: True: the backend assembles C itself (an :class:`AssemblingBackend`)
    assembles = False

    @abc.abstractmethod
    def analyze(self, C: sp.csc_matrix) -> None:
        """Ordering and symbolic analysis of C (its lower triangle, CSC)."""

    @abc.abstractmethod
    def factorize(self, C: sp.csc_matrix) -> float:
        """Numeric factorization of C (same pattern as analysed); returns log|C|.

        Raises
        ------
        NotPositiveDefinite
            When C is not positive definite (``.column``: the equation, original order).
        """

    @abc.abstractmethod
    def solve(self, B):
        """C^-1 B for a dense (n,) / (n, k) array or a sparse n x k matrix (returned dense)."""

    @abc.abstractmethod
    def set_pattern(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """The (row, col) pairs (original order, either triangle) of C^-1 wanted at each iterate."""

    @abc.abstractmethod
    def selected_inverse(self) -> np.ndarray:
        """C^-1 at the pairs of :meth:`set_pattern`, in their order, for the current factor."""

    def memory_estimate(self) -> dict | None:
        """What the analysis forecasts for the factorization (MB per rank, ...); None if nothing."""
        return None

    def close(self) -> None:
        """Release the factor (and, for a distributed backend, its processes' share)."""


class AssemblingBackend(Backend):
    """A backend that assembles C itself, distributed over its processes (MUMPS, :mod:`.share`):
    given the model once and, at each iterate, what C is made of instead of C."""

    assembles = True

    @abc.abstractmethod
    def analyze_model(self, model) -> None:
        """The analysis of the model's C (a REMLModel: pattern, design)."""

    @abc.abstractmethod
    def factorize_assembly(self, parts: Assembly) -> float:
        """Numeric factorization of the model's C at `parts`; returns log|C| (as :meth:`factorize`)."""


def equation_label(design, pattern, j: int) -> str:
    """Words for equation `j` of C: the fixed effect, or the random term, level and trait."""
    j = int(j)
    if j < design.p:
        return f"equation {j}: fixed effect {design.fixef_names[j]!r}"
    for rd, off in zip(design.random, pattern.offsets):
        if off <= j < off + rd.q * rd.t:
            level, c = divmod(j - off, rd.t)
            text = f"equation {j}: term {rd.name!r}, level {str(rd.levels[level])!r}"
            if rd.t > 1:
                comp = rd.comp_labels[c] if rd.dims else str(design.traits[rd.traits[c]])
                text += f", {comp!r}"
            return text
    return f"equation {j}"


class _Solve:
    """The factor as the engine calls it: ``factor(B)`` is C^-1 B.

    MUMPS keeps its factor after the selected inverse (ICNTL(30) computes into its own
    buffer), so the factor is always ``solvable`` and never ``consumed`` (mvreml.chol's states).
    """

    solvable = True
    state = "factorized"

    def __init__(self, backend: Backend):
        self.backend = backend

    def __call__(self, B):
        return self.backend.solve(B)


class _Selected:
    """The engine's view of the selected inverse: ``values(factor)``, ``diagonal(factor)``."""

    def __init__(self, backend: Backend, pattern):
        self.backend = backend
        self.diag_pos = np.asarray(pattern.indptr[:-1], dtype=np.int64)   # each column starts on its diagonal
        backend.set_pattern(pattern.rows, pattern.cols)

    def values(self, factor=None) -> np.ndarray:
        return self.backend.selected_inverse()

    def diagonal(self, factor=None) -> np.ndarray:
        return self.values()[self.diag_pos]


def factorize_model(model, backend: Backend, C) -> float:
    """The engine's factorization step on `backend`: log|C|; sets ``model.factor`` / ``.selinv``.

    `C` is the matrix, or an :class:`Assembly` for a backend that ``assembles``. Raises the
    engine's ``Infeasible`` (a point to step back from, or a start to report) naming the
    equation at which C stopped being positive definite, when the backend knows it.
    """
    from ..likelihood import Infeasible

    parts = C if isinstance(C, Assembly) else None
    if model.factor is None:
        pat = model.pattern
        log.info("symbolic analysis of the mixed-model equations (%s): %d equations, %d nonzeros",
                 backend.name, pat.n_eq, pat.nnz)
        t0 = time.perf_counter()
        with model.timer("symbolic"):
            if parts is None:
                backend.analyze(C)
            else:
                backend.analyze_model(model)
        log.info("symbolic analysis done in %.1f s", time.perf_counter() - t0)
        est = backend.memory_estimate()
        if est and est.get("message"):
            log.info("%s", est["message"])
        model.factor = _Solve(backend)
        model.selinv = _Selected(backend, model.pattern)
    try:
        with model.timer("factorize"):
            logdet = float(backend.factorize(C) if parts is None else backend.factorize_assembly(parts))
    except NotPositiveDefinite as exc:
        where = "" if exc.column is None else f" at {equation_label(model.design, model.pattern, exc.column)}"
        raise Infeasible(f"mixed-model equations not positive definite{where} ({backend.name}: {exc.detail})")
    if not np.isfinite(logdet):
        raise Infeasible(f"mixed-model equations not numerically positive definite (log|C| = {logdet})")
    return logdet


def as_dense_rhs(B, n: int) -> tuple[np.ndarray, bool]:
    """B as a Fortran-ordered float (n, k) array, and whether it was a vector."""
    if sp.issparse(B):
        B = B.toarray()
    B = np.asarray(B, dtype=float)
    vector = B.ndim == 1
    if B.shape[0] != n:
        raise ValueError(f"right-hand side has {B.shape[0]} rows, the equations {n}")
    return np.array(B.reshape(n, -1), dtype=float, order="F", copy=True), vector
