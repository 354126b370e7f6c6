"""CHOLMOD (scikit-sparse, :mod:`mvreml.cholmod`) behind the :class:`~.base.Backend` interface.

The engine's default path calls CHOLMOD directly (``mvreml.likelihood``); this adapter is the
same linear algebra behind the common interface, for code that takes any backend (the MUMPS
benchmark, the tests that hold the two side by side, the MUMPS backend's diagnosis of a
failed factorization).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Backend, NotPositiveDefinite, as_dense_rhs


class CholmodBackend(Backend):
    """A CHOLMOD factor analysed once and refactorized in place.

    Parameters
    ----------
    ordering : str
        CHOLMOD fill-reducing ordering ("default", "amd", "metis", ...).
    """

    name = "cholmod"

    def __init__(self, ordering: str = "default"):
        self.ordering = ordering
        self.factor = None
        self._selinv = None
        self._pairs = None
        self.n = 0

    def analyze(self, C):
        from ..cholmod import analyze

        self.n = C.shape[0]
        self.factor = analyze(sp.csc_matrix(C), mode="auto", ordering_method=self.ordering)
        self._selinv = None

    def factorize(self, C) -> float:
        from ..cholmod import CholmodError, CholmodNotPositiveDefiniteError, failed_column
        from ..errors import FactorizationError
        from ..selinv import SelectedInverse

        try:
            self.factor.cholesky_inplace(sp.csc_matrix(C))
        except CholmodNotPositiveDefiniteError as exc:
            raise NotPositiveDefinite(str(exc), failed_column(exc)) from None
        try:
            with np.errstate(invalid="ignore", divide="ignore"):     # judged below
                logdet = float(self.factor.logdet())
            if self._selinv is None and self._pairs is not None:
                self._selinv = SelectedInverse(self.factor, *self._pairs)
        except (CholmodError, FactorizationError) as exc:
            raise NotPositiveDefinite(f"incomplete Cholesky factor: {exc}") from None
        if not np.isfinite(logdet):
            # a simplicial LDL' factor does not stop at a negative pivot: find the first one
            raise NotPositiveDefinite(f"log|C| = {logdet}", _first_bad_pivot(self.factor))
        return logdet

    def solve(self, B):
        X, vector = as_dense_rhs(B, self.n)
        out = np.asarray(self.factor(X))
        return out.ravel() if vector else out

    def set_pattern(self, rows, cols):
        self._pairs = (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
        self._selinv = None

    def selected_inverse(self):
        from ..selinv import SelectedInverse

        if self._selinv is None:
            self._selinv = SelectedInverse(self.factor, *self._pairs)
        return self._selinv.values(self.factor)

    def close(self):
        self.factor = self._selinv = None


def _first_bad_pivot(factor) -> int | None:
    """The original-order column of the first pivot (in elimination order) that is not > 0."""
    try:
        d = np.asarray(factor.D())
        bad = np.flatnonzero(~(d > 0))
        return int(np.asarray(factor.P())[bad[0]]) if len(bad) else None
    except Exception:            # an unreadable factor: no column to name
        return None
