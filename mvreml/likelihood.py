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
from .errors import FactorizationError
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
    section: int | None = None     # residual section (dsum level) of a residual block
    label: str | None = None       # name its component labels start with ("site_S1!R")

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def label_name(self) -> str:
        return self.label or self.name


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
    backend : mvreml.backends.Backend, optional
        Another sparse solver (MUMPS) for the factorization, solves and selected inverse.
    """

    def __init__(self, design: Design, blocks: list, ordering: str = "default", timer=None, backend=None):
        self.design = design
        self.backend = backend       # a mvreml.backends.Backend (MUMPS), or None: CHOLMOD below
        self.blocks = blocks
        # the residual: one block per section (dsum level), after the random terms
        self.res_blocks = [b for b in blocks if b.k is None]
        self.n_random = len(blocks) - len(self.res_blocks)
        self.res_block = self.res_blocks[-1]
        self.timer = timer if timer is not None else Timer()
        with self.timer("mme_pattern"):
            self.pattern = MMEPattern(design)
        self.ordering = ordering
        self.factor = None
        self.selinv = None
        self.factor_theta = None     # theta of the numeric factor held in self.factor (None: none)
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

    def _pattern_sections(self) -> np.ndarray:
        ps = self.design.pattern_section
        return np.zeros(len(self.design.patterns), np.int64) if ps is None else ps

    def _residual_parts(self, R0s):
        """Per missing pattern (of a residual section): R_m^-1 (padded into t x t), log|R_m|."""
        pats = self.design.patterns
        t = self.design.t
        stack = np.zeros((len(pats), t, t))
        logdet = np.zeros(len(pats))
        for m, (o, sec) in enumerate(zip(pats, self._pattern_sections())):
            idx = np.flatnonzero(o)
            Rm = R0s[sec][np.ix_(idx, idx)]
            try:
                Lm = np.linalg.cholesky(Rm)
                inv = np.linalg.inv(Rm)
            except np.linalg.LinAlgError:
                raise Infeasible("residual matrix not positive definite")
            if not (np.all(np.isfinite(inv)) and np.all(np.diag(Lm) > 0)):
                raise Infeasible("residual matrix numerically singular")
            n = len(idx)
            stack[m, :n, :n] = 0.5 * (inv + inv.T)
            logdet[m] = 2.0 * np.log(np.diag(Lm)).sum()
        return stack, logdet

    def _pair_values(self, stack, weighted=True):
        pat = self.pattern
        vals = stack[self.pair_pattern, pat.pair_ia, pat.pair_ib]
        return vals * self.pair_w if weighted else vals

    def _factorize(self, C):
        if self.backend is not None:     # backend hook: mvreml.backends does the whole step
            from .backends import factorize_model
            return factorize_model(self, self.backend, C)
        from .cholmod import CholmodError, CholmodNotPositiveDefiniteError, analyze

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
        try:
            # a factorization CHOLMOD only warns about (scikit-sparse 0.5, supernodal) leaves a
            # partial factor: an unreadable one or a non-finite log|C| is the same failure
            logdet = float(self.factor.logdet())
            if self.selinv is None:
                self.selinv = SelectedInverse(self.factor, self.pattern.rows, self.pattern.cols)
        except (CholmodError, FactorizationError) as exc:
            raise Infeasible(f"mixed-model equations not numerically positive definite (incomplete Cholesky "
                             f"factor: {exc})")
        if not np.isfinite(logdet):
            raise Infeasible(f"mixed-model equations not numerically positive definite (log|C| = {logdet})")
        return logdet

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, theta: np.ndarray, derivatives: bool = True) -> Evaluation:
        """log L (and score, AI, EM updates when `derivatives`) at theta."""
        d = self.design
        pat = self.pattern
        mats = self.matrices(theta)
        nr = self.n_random
        ginv, logdet_g = [], 0.0
        for b, G, rd in zip(self.blocks[:nr], mats[:nr], d.random):
            try:
                Lg = np.linalg.cholesky(G)
            except np.linalg.LinAlgError:
                raise Infeasible(f"covariance matrix of {b.name!r} not positive definite")
            Gi = np.linalg.inv(G)
            ginv.append(0.5 * (Gi + Gi.T))
            logdet_g += rd.q * 2.0 * np.log(np.diag(Lg)).sum() + rd.t * rd.logdet_k
        if d.lattice is None:
            rstack, rlogdet = self._residual_parts(mats[nr:])
            rinv_pairs = self._pair_values(rstack)
            logdet_r = float(self.pattern_count @ rlogdet) - self.logw
        else:
            rstack = None
            rinv_pairs, logdet_r = self._lattice_parts(theta)
        with self.timer("assemble"):
            C = pat.assemble(rinv_pairs, ginv)
            Rinv = pat.rinv_matrix(rinv_pairs)
            ry = Rinv @ d.y
            rhs = pat.W.T @ ry
        # a failed factorization leaves no usable factor: forget where the last good one was
        self.factor_theta = None
        logdet_c = self._factorize(C)
        self.factor_theta = np.array(theta, dtype=float, copy=True)
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
        F = np.zeros((self.N, self.n_theta), order="F")   # filled column by column
        em = []
        sol, e = ev.solution, ev.residuals
        with self.timer("score"):
            nr = self.n_random
            for b, G, Gi, rd, off, Z in zip(self.blocks[:nr], mats[:nr], ginv, d.random, pat.offsets, self.Z):
                U = sol[off:off + rd.q * rd.t].reshape(rd.q, rd.t)
                S = U.T @ (rd.kinv @ U) + pat.term_trace(b.k, x)
                S = 0.5 * (S + S.T)
                em.append(S / rd.q)
                dG = b.structure.derivatives(ev.theta[b.slice])
                for j in range(b.stop - b.start):
                    A = Gi @ dG[j]
                    score[b.start + j] = -0.5 * (rd.q * np.trace(A) - np.trace(A @ Gi @ S))
                    F[:, b.start + j] = Z @ (U @ A).ravel()
            # residual, section by section: a parameter of section s moves only its records' R_i
            Q = pat.residual_trace_pairs(x)
            ee = e[pat.pair_a] * e[pat.pair_b] + Q
            for rb, R0 in zip(self.res_blocks, mats[nr:]):
                if d.lattice is not None:
                    self._lattice_score(rb, ev, ee, score, F)
                    em.append(None)          # no EM update of a correlation: AI steps only
                    continue
                self._residual_score(rb, ev, rstack, ee, score, F)
                em.append(self._residual_em(R0, rstack, ee, rb.section or 0))
        with self.timer("ai"):
            RF = Rinv @ F
            B = pat.W.T @ RF
            CB = self.factor(B)
            ai = 0.5 * (F.T @ RF - B.T @ CB)
        ev.score = score
        ev.ai = 0.5 * (ai + ai.T)
        ev.em = em

    # ----------------------------------------------------------------- spatial residuals
    def _lattice_parts(self, theta):
        """R^-1 on the pairs of a spatial residual and log|R| (mvreml.lattice), section by section."""
        d = self.design
        values = np.zeros(len(self.pattern.pair_a))
        logdet = 0.0
        for rb in self.res_blocks:
            mine = d.pair_section == (rb.section or 0)
            th = theta[rb.slice]
            if not rb.structure.feasible(th):
                raise Infeasible(f"residual {rb.name!r} outside its parameter space")
            values[mine] = rb.structure.rinv_values(th, d.pair_pos[0][mine], d.pair_pos[1][mine])
            logdet += rb.structure.logdet(th)
        return values, logdet

    def _lattice_score(self, rb, ev, ee, score, F):
        """Score and working variates of a spatial section: with dR^-1 sparse on the pairs,
        tr(R^-1 dR R^-1 E) = -sum_pairs dR^-1 E, and f = dR R^-1 e = -R dR^-1 e."""
        d = self.design
        pat = self.pattern
        mine = d.pair_section == (rb.section or 0)
        th = ev.theta[rb.slice]
        dvals = rb.structure.rinv_derivatives(th, d.pair_pos[0][mine], d.pair_pos[1][mine])
        tr1 = rb.structure.dlogdet(th)
        grid = d.lattice[rb.section or 0]["grid"]
        for j in range(rb.stop - rb.start):
            full = np.zeros(len(pat.pair_a))
            full[mine] = dvals[j]
            score[rb.start + j] = -0.5 * (tr1[j] + full @ ee)
            g = pat.rinv_matrix(full) @ ev.residuals
            f = np.zeros(self.N)
            f[grid.reshape(-1)] = -rb.structure.apply(th, g[grid]).reshape(-1)
            F[:, rb.start + j] = f

    def _residual_score(self, rb, ev, rstack, ee, score, F):
        """Score and working variates of the parameters of residual block `rb` (one section)."""
        d = self.design
        pat = self.pattern
        e = ev.residuals
        dR = rb.structure.derivatives(ev.theta[rb.slice])
        mine = np.flatnonzero(self._pattern_sections() == (rb.section or 0))
        for j in range(rb.stop - rb.start):
            bstack = np.zeros_like(rstack)
            hstack = np.zeros_like(rstack)
            tr1 = 0.0
            for m in mine:
                idx = np.flatnonzero(d.patterns[m])
                n = len(idx)
                Ri = rstack[m, :n, :n]
                H = dR[j][np.ix_(idx, idx)] @ Ri
                hstack[m, :n, :n] = H
                bstack[m, :n, :n] = Ri @ H
                tr1 += self.pattern_count[m] * np.trace(H)
            bp = self._pair_values(bstack)
            score[rb.start + j] = -0.5 * (tr1 - bp @ ee)
            hp = self._pair_values(hstack, weighted=False)
            F[:, rb.start + j] = pat.rinv_matrix(hp) @ e

    def _residual_em(self, R0, rstack, ee, section: int = 0):
        """EM update of R0 of one residual section with missing traits: the expected full-trait
        residual outer products over the section's units."""
        d = self.design
        pat = self.pattern
        t = d.t
        n_pat = len(d.patterns)
        # sum over units of w_i E_i, by pattern and local position
        idx = (self.pair_pattern * t + pat.pair_ia) * t + pat.pair_ib
        Esum = np.bincount(idx, weights=ee * self.pair_w, minlength=n_pat * t * t).reshape(n_pat, t, t)
        total = np.zeros((t, t))
        n_units = 0
        for m in np.flatnonzero(self._pattern_sections() == section):
            io = np.flatnonzero(d.patterns[m])
            n = len(io)
            cnt = self.pattern_count[m]
            n_units += cnt
            Ri = rstack[m, :n, :n]
            A = R0[:, io] @ Ri                        # t x n
            total += cnt * R0 + A @ (Esum[m, :n, :n] - cnt * R0[np.ix_(io, io)]) @ A.T
        return total / max(n_units, 1)

    # ----------------------------------------------------------------- extras
    def factorized_at(self, theta) -> bool:
        """True when the numeric factor held is that of C at exactly this theta."""
        return self.factor_theta is not None and np.array_equal(self.factor_theta, theta)

    def refactorize(self, theta) -> None:
        """Make the held factor that of C at theta (nothing to do when it already is).

        The iteration factorizes candidates it then rejects (a halved step, an EM step, the
        probes of an unbounded direction), so the factor left behind need not belong to the
        reported theta; whatever reads the factor for a result calls this first.
        """
        if not self.factorized_at(theta):
            self.evaluate(np.asarray(theta, dtype=float), derivatives=False)

    def pev_diagonal(self, theta=None) -> np.ndarray:
        """diag(C^-1) in the original ordering, at theta (default: the factor held)."""
        if theta is not None:
            self.refactorize(theta)
        return self.selinv.diagonal(self.factor)

    def fixed_vcov(self, max_p: int = 500, theta=None) -> np.ndarray | None:
        """(X'V^-1X)^-1 = the fixed block of C^-1, by p solves (None when p is large), at
        theta (default: the factor held)."""
        p = self.p
        if p == 0 or p > max_p:
            return None
        if theta is not None:
            self.refactorize(theta)
        E = sp.csc_matrix((np.ones(p), (np.arange(p), np.arange(p))), shape=(self.pattern.n_eq, p))
        X = self.factor(E)
        # only the fixed rows are wanted: slice before densifying the P x p solution
        V = X[:p].toarray()[:, :p] if sp.issparse(X) else np.asarray(X)[:p, :p]
        return 0.5 * (V + V.T)
