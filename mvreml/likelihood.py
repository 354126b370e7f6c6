"""One evaluation of the REML model at a parameter value: log L, score, AI matrix.

`REMLModel.evaluate(theta)` assembles C into its fixed pattern, factorizes it numerically
(CHOLMOD, symbolic analysis done once), solves the MME, and from the factor computes the
log-likelihood, the selected inverse, the score and the average-information matrix,
following docs/THEORY.md term by term. Nothing here is N x N or q x q dense.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import scipy.sparse as sp

from ._timing import Timer
from .design import Design
from .ar1_levels import ar1_term_score, ar1_term_variates
from .errors import FactorizationError, NotPositiveDefiniteError
from .mme import MMEPattern

LOG2PI = np.log(2.0 * np.pi)
#: the orderings the engine asks CHOLMOD for, by the name the user gave (see REMLModel)
ENGINE_ORDERING = {"default": "amd"}
#: entries of a dense block of right-hand sides solved at once (fixed_vcov): 32 MB
_SOLVE_BLOCK = 4_000_000
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
    # (evaluation count, callable): the derivatives of an evaluation made without them, to be
    # completed from the factor still held (REMLModel.complete)
    pending: tuple | None = field(default=None, repr=False)


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
        CHOLMOD fill-reducing ordering ("default", "amd", "metis", "nesdis", ...). "default" is
        AMD: CHOLMOD's own default (AMD, then METIS too when AMD's fill is high, the better one
        kept) kept AMD's factor on every benchmark problem (U/B/T-M, U-L: the same nnz(L)) and
        spent 15-90 % more on the analysis for the METIS attempt (benchmarks/RESULTS.md).
    backend : mvreml.backends.Backend, optional
        Another sparse solver (MUMPS) for the factorization, solves and selected inverse.
    """

    #: the selected inverse overwrites the factor (mvreml.chol), so the AI solves come before it
    selinv_in_place = True
    #: evaluations made so far: tells whether the factor held is still that of a given one
    _evaluations = 0

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
        self._fixed_pos = False      # positions of the fixed block in the factor (False: not looked up)
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
        from .chol import SupernodalFactor, SupernodalInverse

        if self.factor is None:
            # the one long step of a large fit besides A^-1: say so (logging, quiet by default)
            log.info("symbolic analysis of the mixed-model equations: %d equations, %d nonzeros",
                     C.shape[0], C.nnz)
            t0 = time.perf_counter()
            with self.timer("symbolic"):
                self.factor = SupernodalFactor(C, ordering=ENGINE_ORDERING.get(self.ordering, self.ordering))
            log.info("symbolic analysis done in %.1f s", time.perf_counter() - t0)
        try:
            with self.timer("factorize"):
                self.factor.factorize(C)
        except NotPositiveDefiniteError as exc:
            raise Infeasible(f"mixed-model equations not positive definite{self._where(exc.column)} ({exc})")
        try:
            logdet = self.factor.logdet()
            if self.selinv is None:
                # positions of C's pattern in the factor: once per analysis
                self.selinv = SupernodalInverse(self.factor, self.pattern.rows, self.pattern.cols,
                                                in_place=self.selinv_in_place)
        except FactorizationError as exc:
            # a factor that cannot be read is C not numerically positive definite at this point
            raise Infeasible(f"mixed-model equations not numerically positive definite (incomplete Cholesky "
                             f"factor: {exc})")
        if not np.isfinite(logdet):
            raise Infeasible(f"mixed-model equations not numerically positive definite (log|C| = {logdet})")
        return logdet

    def _where(self, column) -> str:
        """" at equation j: term 'animal', level '1005'" for a failed pivot (empty if unknown)."""
        if column is None:
            return ""
        from .backends.base import equation_label

        try:   # the factor formulation of fa carries its own inner design
            return " at " + equation_label(getattr(self, "idesign", self.design), self.pattern, column)
        except (AttributeError, IndexError):
            return f" at equation {int(column)}"

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, theta: np.ndarray, derivatives: bool = True) -> Evaluation:
        """log L (and score, AI, EM updates when `derivatives`) at theta."""
        d = self.design
        pat = self.pattern
        mats = self.matrices(theta)
        nr = self.n_random
        ginv, logdet_g = [], 0.0
        self.kinvs = self._term_kinvs(theta)
        for b, G, rd, (_, logdet_k) in zip(self.blocks[:nr], mats[:nr], d.random, self.kinvs):
            try:
                Lg = np.linalg.cholesky(G)
            except np.linalg.LinAlgError:
                raise Infeasible(f"covariance matrix of {b.name!r} not positive definite")
            Gi = np.linalg.inv(G)
            ginv.append(0.5 * (Gi + Gi.T))
            logdet_g += rd.q * 2.0 * np.log(np.diag(Lg)).sum() + rd.t * logdet_k
        if d.lattice is None:
            rstack, rlogdet = self._residual_parts(mats[nr:])
            rinv_pairs = self._pair_values(rstack)
            logdet_r = float(self.pattern_count @ rlogdet) - self.logw
        else:
            rstack = None
            rinv_pairs, logdet_r = self._lattice_parts(theta)
        with self.timer("assemble"):
            if self.backend is not None and self.backend.assembles:
                from .backends import Assembly     # the backend's processes assemble C (MUMPS)
                C = Assembly(rinv_pairs, rstack, ginv)
            else:
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
        for Gi, rd, off, (kinv, _) in zip(ginv, d.random, pat.offsets, self.kinvs):
            U = sol[off:off + rd.q * rd.t].reshape(rd.q, rd.t)
            ypy += float(np.sum((kinv @ U) * (U @ Gi)))
        loglik = -0.5 * ((self.N - self.p) * LOG2PI + logdet_c + logdet_r + logdet_g + ypy)
        ev = Evaluation(theta=theta.copy(), loglik=loglik, solution=sol, residuals=e,
                        logdet_c=logdet_c, ypy=ypy)
        self._evaluations += 1
        if derivatives:
            self._derivatives(ev, mats, ginv, rstack, Rinv)
        else:
            # (ev is passed at completion, not bound here: no ev -> pending -> ev cycle, which
            # would keep a rejected candidate's arrays alive until the cyclic collector runs)
            ev.pending = (self._evaluations, partial(self._derivatives, mats=mats, ginv=ginv, rstack=rstack,
                                                     Rinv=Rinv))
        return ev

    def complete(self, ev: Evaluation) -> Evaluation:
        """`ev` with its score, AI matrix and EM updates.

        An evaluation made with ``derivatives=False`` (a line-search candidate: most are only
        compared by log L) gets them from the factor still held when it was the last point
        evaluated and nothing has consumed its L since: no second factorization. Otherwise
        theta is evaluated again. Returns an Evaluation with derivatives (`ev` itself when it
        could be completed in place).
        """
        if ev.score is not None:
            return ev
        pending, ev.pending = ev.pending, None
        if (pending is not None and pending[0] == self._evaluations and self.factorized_at(ev.theta)
                and getattr(self.factor, "solvable", True)):
            pending[1](ev)
            return ev
        return self.evaluate(ev.theta)

    def _derivatives(self, ev, mats, ginv, rstack, Rinv):
        d = self.design
        pat = self.pattern
        score = np.zeros(self.n_theta)
        F = np.zeros((self.N, self.n_theta), order="F")   # filled column by column
        em = []
        sol, e = ev.solution, ev.residuals
        nr = self.n_random
        # The working variates F and the AI solves need L; the selected inverse then overwrites
        # L in place (mvreml.chol), so they come first and the traces that need C^-1 after.
        with self.timer("score"):
            dGi = []                   # per random term: Gi dG_j for each of its parameters
            dks = []                   # per random term: dK^-1 values of an AR1 term's K
            for b, Gi, rd, off, Z in zip(self.blocks[:nr], ginv, d.random, pat.offsets, self.Z):
                U = sol[off:off + rd.q * rd.t].reshape(rd.q, rd.t)
                dG = b.structure.derivatives(ev.theta[b.slice])
                dGi.append([Gi @ dG[j] for j in range(b.stop - b.start)])
                for j, A in enumerate(dGi[-1]):
                    F[:, b.start + j] = Z @ (U @ A).ravel()
                dks.append(None if rd.kcor is None
                           else ar1_term_variates(b, rd, ev.theta[b.slice], U, Z, F))
            res_parts = [self._lattice_variates(rb, ev, F) if d.lattice is not None
                         else self._residual_variates(rb, ev, rstack, F) for rb in self.res_blocks]
        with self.timer("ai"):
            RF = Rinv @ F
            B = pat.W.T @ RF
            CB = self.factor(B)
            ai = 0.5 * (F.T @ RF - B.T @ CB)
        with self.timer("selinv"):
            x = self.selinv.values(self.factor)
        ev.cinv = x
        with self.timer("score"):
            for b, Gi, rd, off, As, dk in zip(self.blocks[:nr], ginv, d.random, pat.offsets, dGi, dks):
                U = sol[off:off + rd.q * rd.t].reshape(rd.q, rd.t)
                S = U.T @ (self.kinvs[b.k][0] @ U) + pat.term_trace(b.k, x)
                S = 0.5 * (S + S.T)
                em.append(S / rd.q if rd.kcor is None else None)   # no EM update of a correlation
                for j, A in enumerate(As):
                    score[b.start + j] = -0.5 * (rd.q * np.trace(A) - np.trace(A @ Gi @ S))
                if dk is not None:
                    ar1_term_score(pat, b, rd, ev.theta[b.slice], U, Gi, x, dk, score)
            # residual, section by section: a parameter of section s moves only its records' R_i
            Q = pat.residual_trace_pairs(x)
            ee = e[pat.pair_a] * e[pat.pair_b] + Q
            esum = self._residual_sums(ee) if d.lattice is None else None
            for rb, R0, (tr1, dpairs) in zip(self.res_blocks, mats[nr:], res_parts):
                for j in range(rb.stop - rb.start):
                    score[rb.start + j] = -0.5 * (tr1[j] + dpairs[j] @ ee)
                # no EM update of a spatial correlation: AI steps only
                em.append(None if d.lattice is not None else self._residual_em(R0, rstack, ee, rb.section or 0, esum))
        ev.score = score
        ev.ai = 0.5 * (ai + ai.T)
        ev.em = em

    def _term_kinvs(self, theta):
        """(K^-1, log|K|) of every random term at theta: fixed, or of an AR1 term's K(theta)
        (whose maps into C are then set to those values)."""
        out = []
        for b, rd in zip(self.blocks[:self.n_random], self.design.random):
            if rd.kcor is None:
                out.append((rd.kinv, rd.logdet_k))
                continue
            kp = theta[b.slice][b.structure.k_slice]
            if not rd.kcor.feasible(kp):
                raise Infeasible(f"correlation of {b.name!r} outside (-1, 1)")
            vals = rd.kcor.values(kp)
            self.pattern.set_kinv(b.k, vals)
            out.append((sp.csc_matrix((vals, rd.kcor.rows, rd.kcor.indptr), shape=(rd.q, rd.q)),
                        rd.kcor.logdet(kp)))
        return out

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

    def _lattice_variates(self, rb, ev, F):
        """Working variates of a spatial section into F, and what its score needs: with dR^-1
        sparse on the pairs, tr(R^-1 dR R^-1 E) = -sum_pairs dR^-1 E, and f = dR R^-1 e =
        -R dR^-1 e. Returns (tr(R^-1 dR) per parameter, -dR^-1 on the pairs per parameter);
        the score is -1/2 (tr1 + dpairs @ ee)."""
        d = self.design
        pat = self.pattern
        mine = d.pair_section == (rb.section or 0)
        th = ev.theta[rb.slice]
        dvals = rb.structure.rinv_derivatives(th, d.pair_pos[0][mine], d.pair_pos[1][mine])
        tr1 = rb.structure.dlogdet(th)
        grid = d.lattice[rb.section or 0]["grid"]
        dpairs = []
        for j in range(rb.stop - rb.start):
            full = np.zeros(len(pat.pair_a))
            full[mine] = dvals[j]
            dpairs.append(full)
            g = pat.rinv_matrix(full) @ ev.residuals
            f = np.zeros(self.N)
            f[grid.reshape(-1)] = -rb.structure.apply(th, g[grid]).reshape(-1)
            F[:, rb.start + j] = f
        return [tr1[j] for j in range(rb.stop - rb.start)], dpairs

    def _residual_variates(self, rb, ev, rstack, F):
        """Working variates of the parameters of residual block `rb` (one section) into F, and
        (tr(R^-1 dR) per parameter, -(R^-1 dR R^-1) on the pairs per parameter) for its score."""
        d = self.design
        pat = self.pattern
        e = ev.residuals
        dR = rb.structure.derivatives(ev.theta[rb.slice])
        mine = np.flatnonzero(self._pattern_sections() == (rb.section or 0))
        # only the section's pairs move: a dsum over 50 sites would otherwise pass over every
        # pair of every section for each section
        sec = self._section_pairs(rb.section or 0)
        pp, ia, ib = self.pair_pattern[sec], pat.pair_ia[sec], pat.pair_ib[sec]
        pa, eb = pat.pair_a[sec], e[pat.pair_b[sec]]
        tr1s, dpairs = [], []
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
            tr1s.append(tr1)
            dp = np.zeros(len(pat.pair_a))
            dp[sec] = -(bstack[pp, ia, ib] * self.pair_w[sec])
            dpairs.append(dp)
            # (R^-1 dR R^-1 on the pairs) e, row by row: the pairs are in row order
            F[:, rb.start + j] = np.bincount(pa, weights=hstack[pp, ia, ib] * eb, minlength=self.N)
        return tr1s, dpairs

    def _section_pairs(self, section: int) -> np.ndarray:
        """Indices of the within-unit pairs of residual section `section` (found once)."""
        cache = self.__dict__.setdefault("_pairs_of_section", {})
        if section not in cache:
            cache[section] = np.flatnonzero(self._pattern_sections()[self.pair_pattern] == section)
        return cache[section]

    def _residual_sums(self, ee) -> np.ndarray:
        """sum over units of w_i E_i (n_patterns x t x t), E the expected residual products on
        the pairs (what every section's EM update reads)."""
        t = self.design.t
        n_pat = len(self.design.patterns)
        idx = (self.pair_pattern * t + self.pattern.pair_ia) * t + self.pattern.pair_ib
        return np.bincount(idx, weights=ee * self.pair_w, minlength=n_pat * t * t).reshape(n_pat, t, t)

    def _residual_em(self, R0, rstack, ee, section: int = 0, esum=None):
        """EM update of R0 of one residual section with missing traits: the expected full-trait
        residual outer products over the section's units (``esum``: `_residual_sums` of ee,
        when the caller has it for all sections)."""
        d = self.design
        t = d.t
        Esum = self._residual_sums(ee) if esum is None else esum
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
        """True when the factor held is that of C at exactly this theta: its L, or C^-1 on its
        pattern when an evaluation with derivatives consumed it (mvreml.chol)."""
        return self.factor_theta is not None and np.array_equal(self.factor_theta, theta)

    def refactorize(self, theta) -> None:
        """Make the held factor that of C at theta (nothing to do when it already is).

        The iteration factorizes candidates it then rejects (a halved step, an EM step, the
        probes of an unbounded direction), so the factor left behind need not belong to the
        reported theta; whatever reads the factor for a result calls this first.
        """
        if not self.factorized_at(theta):
            self.evaluate(np.asarray(theta, dtype=float), derivatives=False)

    def _solvable_at(self, theta) -> None:
        """Make the held factor the L of C at theta (or at the factor's theta when None): the
        selected inverse overwrites L, so solves after it need a new factorization."""
        if theta is None:
            if self.factor.solvable:
                return
            if self.factor_theta is None:
                raise FactorizationError("no factor held (the last factorization failed): pass theta")
            theta = self.factor_theta
        if not (self.factorized_at(theta) and self.factor.solvable):
            self.evaluate(np.asarray(theta, dtype=float), derivatives=False)

    def solve(self, B, theta=None) -> np.ndarray:
        """C^-1 B at theta (default: the factor held); B dense (n or n x k) or sparse."""
        self._solvable_at(theta)
        return self.factor(B)

    def pev_diagonal(self, theta=None) -> np.ndarray:
        """diag(C^-1) in the original ordering, at theta (default: the factor held). Read from
        the last selected inverse when the factor holds it, else computed (in place)."""
        if theta is not None:
            self.refactorize(theta)
        return self.selinv.diagonal(self.factor)

    def _fixed_positions(self) -> np.ndarray | None:
        """Positions of the fixed block's lower triangle in the factor, None when some of it lies
        outside the pattern of L (then the selected inverse does not hold it); once per analysis."""
        if self._fixed_pos is False:
            i, j = np.tril_indices(self.p)
            pos = self.factor.positions(i, j)
            self._fixed_pos = pos if np.all(pos >= 0) else None
        return self._fixed_pos

    def fixed_vcov(self, max_p: int = 500, theta=None) -> np.ndarray | None:
        """(X'V^-1X)^-1 = the fixed block of C^-1 (None when p is large), at theta (default: the
        factor held): read from the selected inverse when the factor holds it and the block lies
        in the pattern of L (fixed effects ordered last), else by p solves."""
        p = self.p
        if p == 0 or p > max_p:
            return None
        if theta is not None:
            self.refactorize(theta)
        if self.factor.state == "consumed" and self._fixed_positions() is not None:
            V = np.zeros((p, p))
            V[np.tril_indices(p)] = self.selinv.read(self._fixed_positions(), self.factor)
            return V + np.tril(V, -1).T
        self._solvable_at(theta)
        n = self.pattern.n_eq
        V = np.empty((p, p))
        step = max(1, min(p, _SOLVE_BLOCK // max(n, 1)))   # dense n x step right-hand sides
        for s in range(0, p, step):
            k = min(step, p - s)
            E = np.zeros((n, k), order="F")
            E[np.arange(s, s + k), np.arange(k)] = 1.0
            V[:, s:s + k] = self.factor(E)[:p]
        return 0.5 * (V + V.T)
