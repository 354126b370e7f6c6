"""The AI matrix of the factor formulation from working variates kept in two sparse parts.

The AI matrix is 1/2 F'PF, F the working variates dV/dtheta_j P y (N x n_theta) and
P = R^-1 - R^-1 W C^-1 W'R^-1. Written as F'R^-1F - B'C^-1B with B = W'R^-1F it needs F dense
(a loading's variate T (K (x) I) dT'Py is nonzero on every record) and C^-1 B for every column,
a full solve pair over all of L. Here each variate is split as f = W x + a, x on the equations
(the BLUP-like part: U A of a term, K h_s of a loading) and a on the records (a loading's
dT fhat, a residual's dR R^-1 e: one site's records). With D = C - W'R^-1W (the G^-1 blocks),
W'R^-1 f = C x + b, b = W'R^-1 a - D x, and

    f_i' P f_j = x_i' D x_j + a_i' R^-1 a_j - b_i' C^-1 b_j

exactly (expand (C x_i + b_i)' C^-1 (C x_j + b_j)); the split is free, only f is fixed. b is
nonzero on the equations the records of a and the slots of x touch (for a MET: the site's
fixed effect, the factor scores and its specific effects), so b' C^-1 b is a forward solve
over the part of L those equations reach and a Gram product
(mvreml.chol.SupernodalFactor.inverse_gram), and F is never formed.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class SplitVariates:
    """Working variates f_j = W x_j + a_j of the variance parameters, both parts sparse.

    Parameters
    ----------
    n_eq, n_obs, n_theta : int
        Equations of C, records, parameters (columns).
    """

    def __init__(self, n_eq: int, n_obs: int, n_theta: int):
        self.shape = (n_eq, n_obs, n_theta)
        self._x: list = []      # (col, rows, x, D x)
        self._a: list = []      # (col, rows, a)

    def equations(self, col: int, rows, x, dx) -> None:
        """Add x (and D x, the same rows) on equations `rows` to column `col`."""
        self._x.append((col, np.asarray(rows, np.int64), np.asarray(x, float), np.asarray(dx, float)))

    def records(self, col: int, rows, a) -> None:
        """Add a on records `rows` to column `col`."""
        self._a.append((col, np.asarray(rows, np.int64), np.asarray(a, float)))

    def dense_column(self, col: int, f: np.ndarray) -> None:
        """A variate given on all records (a = f): its nonzero records are kept."""
        rows = np.flatnonzero(f)
        self.records(col, rows, f[rows])

    def columns(self) -> "_Columns":
        """An object taking ``F[:, j] = f`` (a variate on all records) into this one: what the
        residual variates shared with the dense formulation (REMLModel._residual_variates) write."""
        return _Columns(self)

    def _matrix(self, parts, n_rows: int, which: int) -> sp.csc_matrix:
        m = self.shape[2]
        if not parts:
            return sp.csc_matrix((n_rows, m))
        rows = np.concatenate([p[1] for p in parts])
        cols = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])
        vals = np.concatenate([p[which] for p in parts])
        M = sp.csc_matrix((vals, (rows, cols)), shape=(n_rows, m))
        M.sum_duplicates()
        return M

    def ai(self, W, Rinv, factor, rdiag: np.ndarray | None = None) -> np.ndarray:
        """1/2 F'PF (n_theta x n_theta, symmetric).

        W : the model's N x n_eq design (sparse); Rinv : R^-1 (N x N sparse), or ``rdiag`` its
        diagonal when R is diagonal; factor : the numeric factor of C
        (mvreml.chol.SupernodalFactor).
        """
        n_eq, n_obs, _ = self.shape
        X = self._matrix(self._x, n_eq, 2)
        DX = self._matrix(self._x, n_eq, 3)
        A = self._matrix(self._a, n_obs, 2)
        if rdiag is not None:
            RA = A.copy()
            RA.data *= rdiag[RA.indices]
        else:
            RA = sp.csc_matrix(Rinv @ A)
        Bt = sp.csc_matrix(W.T @ RA) - DX
        ai = (X.T @ DX).toarray() + (A.T @ RA).toarray() - factor.inverse_gram(Bt)
        return 0.25 * (ai + ai.T)


class _Columns:
    """``F[:, j] = f`` (a variate given on all records) into a SplitVariates' record part."""

    def __init__(self, variates: SplitVariates):
        self.variates = variates

    def __setitem__(self, key, f):
        self.variates.dense_column(key[1], np.asarray(f, float))
