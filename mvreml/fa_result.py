"""What a Result reads from a fit in ASReml's factor formulation of fa(k) (:mod:`mvreml.fa_sparse`):
the dense layout of the compound effects u = Lambda f + delta, their PEVs, the fixed-effect
covariance and solves with J C^-1 J' (mvreml.report.build_result, predictions)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .fa_sparse import FactorREMLModel
from .likelihood import REMLModel


class _Layout:
    """The dense formulation's equation offsets, for a Result built on the factor formulation."""

    def __init__(self, design):
        self.offsets = list(design.p + np.cumsum([0] + [rd.q * rd.t for rd in design.random])[:-1])
        self.n_eq = design.p + sum(rd.q * rd.t for rd in design.random)


class _DenseSolve:
    """B -> J C^-1 J' B: solves with the dense C^-1 of the compound effects through the factor
    formulation (predictions and their standard errors)."""

    def __init__(self, model, theta):
        self.model, self.J = model, model.layout_map(theta)

    def __call__(self, B):
        X = self.model.factor(np.asarray(self.J.T @ (B.toarray() if sp.issparse(B) else B)))
        return self.J @ np.asarray(X)


class FactorResultView:
    """What a Result reads from its model (mvreml.report.build_result, predictions) of a fit
    in the factor formulation: the dense layout's offsets, PEVs of u = Lambda f + delta, the
    fixed-effect covariance and solves with J C^-1 J'."""

    def __init__(self, model: FactorREMLModel):
        self.inner_model = model
        self.design, self.blocks, self.n_random = model.design, model.blocks, model.n_random
        self.pattern = _Layout(model.design)
        self.timer = model.timer
        self._theta = None

    def evaluate(self, theta, derivatives: bool = True):
        self._theta = np.array(theta, float)
        return self.inner_model.evaluate(theta, derivatives=derivatives)

    def complete(self, ev):
        self._theta = np.array(ev.theta, float)
        return self.inner_model.complete(ev)

    def refactorize(self, theta):
        self._theta = np.array(theta, float)
        self.inner_model.refactorize(theta)

    @property
    def factor(self):
        return _DenseSolve(self.inner_model, self._theta)

    def fixed_vcov(self, max_p: int = 500, theta=None):
        if theta is not None:
            self.refactorize(theta)
        return REMLModel.fixed_vcov(self.inner_model, max_p=max_p)

    def pev_diagonal(self, theta=None) -> np.ndarray:
        """diag of the dense prediction-error covariance J C^-1 J' (entries of the pattern)."""
        m = self.inner_model
        if theta is not None:
            self.refactorize(theta)
        theta = self._theta
        ip = m.ip
        x = m.selinv.values(m.factor)
        diag = ip.diagonal(x)
        L = m.fb.structure.loadings(theta[m.fb.slice])
        q, k = m.q, m.k
        parts = [diag[:m.p]]
        for i, (kind, j, ird) in enumerate(m.inner):
            off = ip.offsets[i]
            if kind == "term":
                parts.append(diag[off:off + ird.q * ird.t])
            elif kind == "score":
                # the k x k block of level g: column off + g k + r' holds rows r >= r' right
                # after its diagonal
                B = np.zeros((q, k, k))
                for r2 in range(k):
                    col = off + np.arange(q) * k + r2
                    for r in range(r2, k):
                        B[:, r, r2] = B[:, r2, r] = x[ip.indptr[col] + (r - r2)]
                pev = np.einsum("sr,grt,st->gs", L, B, L)
                if not m.rr:
                    # + 2 lambda_s' C^{f_g, delta_gs} + C^{delta_gs, delta_gs}
                    g = np.arange(q)
                    for si in range(m.c):
                        o = ip.offsets[i + 1 + si]
                        cross = np.column_stack([x[m.positions(off + g * k + r, o + g)] for r in range(k)])
                        pev[:, si] += 2.0 * cross @ L[si] + diag[o + g]
                parts.append(pev.ravel())
        return np.concatenate(parts)


def result_model(model):
    """The model a Result reads after the iteration: the factor formulation's view
    (:class:`FactorResultView`), or the model itself when it is the dense one."""
    if not isinstance(model, FactorREMLModel):
        return model
    return FactorResultView(model)
