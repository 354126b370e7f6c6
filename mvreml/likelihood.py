"""One evaluation of the REML model at a parameter value: log L, score, AI matrix.

`REMLModel.evaluate(theta)` assembles C into its fixed pattern, factorizes it numerically
(CHOLMOD, symbolic analysis done once), solves the MME, and from the factor computes the
log-likelihood, the selected inverse, the score and the average-information matrix,
following docs/THEORY.md term by term. Nothing here is N x N or q x q dense.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._timing import Timer
from .design import Design
from .mme import MMEPattern
from .selinv import SelectedInverse

LOG2PI = np.log(2.0 * np.pi)
log = logging.getLogger("mvreml")


@dataclass
class ParamBlock:
    """The parameters of one term (a random term or the residual)."""

    name: str
    structure: object        # mvreml.structures.Structure
    start: int
    stop: int
    k: int | None            # random term index; None for the residual

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass
class Evaluation:
    """Everything computed at one parameter value."""

    theta: np.ndarray
    loglik: float
    solution: np.ndarray
    residuals: np.ndarray
    score: np.ndarray | None = None
    ai: np.ndarray | None = None
    cinv: np.ndarray | None = None
    em: list | None = None          # per block: the EM update of its matrix (t x t)
    logdet_c: float = 0.0
    ypy: float = 0.0


class Infeasible(Exception):
    """The parameter value is outside the parameter space (a matrix not positive definite)."""


class REMLModel:
    """The REML likelihood of a model with a fixed design.

    Parameters
    ----------
    design : Design
    blocks : list of ParamBlock
        Random terms in design order, then the residual.
    ordering : str
        CHOLMOD fill-reducing ordering ("default", "amd", "metis", "nesdis", ...).
    """

    def __init__(self, design: Design, blocks: list, ordering: str = "default", timer=None):
        self.design = design
        self.blocks = blocks
        self.res_block = blocks[-1]
        self.timer = timer if timer is not None else Timer()
        with self.timer("mme_pattern"):
            self.pattern = MMEPattern(design)
        self.ordering = ordering
        self.factor = None
        self.selinv = None
        d = design
        self.n_theta = blocks[-1].stop
        self.p = d.p
        self.N = d.n_obs
        self.pattern_count = np.bincount(d.unit_pattern, minlength=len(d.patterns))
        pu = self.pattern.pair_unit
        self.pair_pattern = d.unit_pattern[pu]
        self.pair_w = d.weights[pu]
        self.obs_per_unit = np.diff(d.unit_start)
        self.logw = float(np.sum(self.obs_per_unit * np.log(d.weights)))
        self.Z = [self.pattern.W[:, off:off + rd.q * rd.t] for rd, off in zip(d.random, self.pattern.offsets)]

    # ----------------------------------------------------------------- pieces
    def matrices(self, theta):
        """G_k and R0 at theta; raises Infeasible when one is not positive definite."""
        mats = []
        for b in self.blocks:
            M = b.structure.matrix(theta[b.slice])
            mats.append(M)
        return mats

    def _residual_parts(self, R0):
        """Per missing pattern: R_m^-1 (padded into t x t), log|R_m|."""
        pats = self.design.patterns
        t = self.design.t
        stack = np.zeros((len(pats), t, t))
        logdet = np.zeros(len(pats))
        for m, o in enumerate(pats):
            idx = np.flatnonzero(o)
            Rm = R0[np.ix_(idx, idx)]
            try:
                Lm = np.linalg.cholesky(Rm)
            except np.linalg.LinAlgError:
                raise Infeasible("residual matrix not positive definite")
            inv = np.linalg.inv(Rm)
            n = len(idx)
            stack[m, :n, :n] = 0.5 * (inv + inv.T)
            logdet[m] = 2.0 * np.log(np.diag(Lm)).sum()
        return stack, logdet

    def _pair_values(self, stack, weighted=True):
        pat = self.pattern
        vals = stack[self.pair_pattern, pat.pair_ia, pat.pair_ib]
        return vals * self.pair_w if weighted else vals

    def _factorize(self, C):
        from .cholmod import CholmodNotPositiveDefiniteError, analyze

        if self.factor is None:
            # the one long step of a large fit besides A^-1: say so (logging, quiet by default)
            log.info("symbolic analysis of the mixed-model equations: %d equations, %d nonzeros",
                     C.shape[0], C.nnz)
            t0 = time.perf_counter()
            with self.timer("symbolic"):
                self.factor = analyze(C, mode="auto", ordering_method=self.ordering)
            log.info("symbolic analysis done in %.1f s", time.perf_counter() - t0)
        try:
            with self.timer("factorize"):
                self.factor.cholesky_inplace(C)
        except CholmodNotPositiveDefiniteError as exc:
            raise Infeasible(f"mixed-model equations not positive definite ({exc})")
        if self.selinv is None:
            self.selinv = SelectedInverse(self.factor, self.pattern.rows, self.pattern.cols)

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, theta: np.ndarray, derivatives: bool = True) -> Evaluation:
        """log L (and score, AI, EM updates when `derivatives`) at theta."""
        d = self.design
        pat = self.pattern
        mats = self.matrices(theta)
        R0 = mats[-1]
        ginv, logdet_g = [], 0.0
        for b, G, rd in zip(self.blocks[:-1], mats[:-1], d.random):
            try:
                Lg = np.linalg.cholesky(G)
            except np.linalg.LinAlgError:
                raise Infeasible(f"covariance matrix of {b.name!r} not positive definite")
            Gi = np.linalg.inv(G)
            ginv.append(0.5 * (Gi + Gi.T))
            logdet_g += rd.q * 2.0 * np.log(np.diag(Lg)).sum() + rd.t * rd.logdet_k
        rstack, rlogdet = self._residual_parts(R0)
        rinv_pairs = self._pair_values(rstack)
        with self.timer("assemble"):
            C = pat.assemble(rinv_pairs, ginv)
            Rinv = pat.rinv_matrix(rinv_pairs)
            ry = Rinv @ d.y
            rhs = pat.W.T @ ry
        self._factorize(C)
        with self.timer("solve"):
            sol = self.factor(rhs)
        e = d.y - pat.W @ sol
        # y'Py as the minimised quadratic e'R^-1 e + sum_k u_k'Gamma_k^-1 u_k: its error is second
        # order in the solve's, whereas y'R^-1 y - sol'rhs cancels two large numbers (relative
        # noise ~1e-10 of log L on 100k records, enough to stall the convergence test).
        ypy = float(e @ (Rinv @ e))
        for Gi, rd, off in zip(ginv, d.random, pat.offsets):
            U = sol[off:off + rd.q * rd.t].reshape(rd.q, rd.t)
            ypy += float(np.sum((rd.kinv @ U) * (U @ Gi)))
        logdet_c = float(self.factor.logdet())
        logdet_r = float(self.pattern_count @ rlogdet) - self.logw
        loglik = -0.5 * ((self.N - self.p) * LOG2PI + logdet_c + logdet_r + logdet_g + ypy)
        ev = Evaluation(theta=theta.copy(), loglik=loglik, solution=sol, residuals=e,
                        logdet_c=logdet_c, ypy=ypy)
        if derivatives:
            self._derivatives(ev, mats, ginv, rstack, Rinv)
        return ev

    def _derivatives(self, ev, mats, ginv, rstack, Rinv):
        d = self.design
        pat = self.pattern
        with self.timer("selinv"):
            x = self.selinv.values(self.factor)
        ev.cinv = x
        score = np.zeros(self.n_theta)
        F = np.zeros((self.N, self.n_theta))
        em = []
        sol, e = ev.solution, ev.residuals
        with self.timer("score"):
            for b, G, Gi, rd, off, Z in zip(self.blocks[:-1], mats[:-1], ginv, d.random, pat.offsets, self.Z):
                U = sol[off:off + rd.q * rd.t].reshape(rd.q, rd.t)
                S = U.T @ (rd.kinv @ U) + pat.term_trace(b.k, x)
                S = 0.5 * (S + S.T)
                em.append(S / rd.q)
                dG = b.structure.derivatives(ev.theta[b.slice])
                for j in range(b.stop - b.start):
                    A = Gi @ dG[j]
                    score[b.start + j] = -0.5 * (rd.q * np.trace(A) - np.trace(A @ Gi @ S))
                    F[:, b.start + j] = Z @ (U @ A).ravel()
            # residual
            rb = self.res_block
            Q = pat.residual_trace_pairs(x)
            ee = e[pat.pair_a] * e[pat.pair_b] + Q
            dR = rb.structure.derivatives(ev.theta[rb.slice])
            pats = d.patterns
            for j in range(rb.stop - rb.start):
                bstack = np.zeros_like(rstack)
                hstack = np.zeros_like(rstack)
                tr1 = 0.0
                for m, o in enumerate(pats):
                    idx = np.flatnonzero(o)
                    n = len(idx)
                    Ri = rstack[m, :n, :n]
                    dRm = dR[j][np.ix_(idx, idx)]
                    H = dRm @ Ri
                    hstack[m, :n, :n] = H
                    bstack[m, :n, :n] = Ri @ H
                    tr1 += self.pattern_count[m] * np.trace(H)
                bp = self._pair_values(bstack)
                score[rb.start + j] = -0.5 * (tr1 - bp @ ee)
                hp = self._pair_values(hstack, weighted=False)
                F[:, rb.start + j] = pat.rinv_matrix(hp) @ e
            em.append(self._residual_em(mats[-1], rstack, ee))
        with self.timer("ai"):
            RF = Rinv @ F
            B = pat.W.T @ RF
            CB = self.factor(B)
            ai = 0.5 * (F.T @ RF - B.T @ CB)
        ev.score = score
        ev.ai = 0.5 * (ai + ai.T)
        ev.em = em

    def _residual_em(self, R0, rstack, ee):
        """EM update of R0 with missing traits: the expected full-trait residual outer products."""
        d = self.design
        pat = self.pattern
        t = d.t
        n_pat = len(d.patterns)
        # sum over units of w_i E_i, by pattern and local position
        idx = (self.pair_pattern * t + pat.pair_ia) * t + pat.pair_ib
        Esum = np.bincount(idx, weights=ee * self.pair_w, minlength=n_pat * t * t).reshape(n_pat, t, t)
        total = np.zeros((t, t))
        for m, o in enumerate(d.patterns):
            io = np.flatnonzero(o)
            n = len(io)
            cnt = self.pattern_count[m]
            Ri = rstack[m, :n, :n]
            A = R0[:, io] @ Ri                        # t x n
            total += cnt * R0 + A @ (Esum[m, :n, :n] - cnt * R0[np.ix_(io, io)]) @ A.T
        return total / d.n_units

    # ----------------------------------------------------------------- extras
    def pev_diagonal(self) -> np.ndarray:
        """diag(C^-1) in the original ordering, for the current factor."""
        return self.selinv.diagonal(self.factor)

    def fixed_vcov(self, max_p: int = 500) -> np.ndarray | None:
        """(X'V^-1X)^-1 = the fixed block of C^-1, by p solves (None when p is large)."""
        p = self.p
        if p == 0 or p > max_p:
            return None
        E = sp.csc_matrix((np.ones(p), (np.arange(p), np.arange(p))), shape=(self.pattern.n_eq, p))
        X = self.factor(E)
        # only the fixed rows are wanted: slice before densifying the P x p solution
        V = X[:p].toarray()[:, :p] if sp.issparse(X) else np.asarray(X)[:p, :p]
        return 0.5 * (V + V.T)
