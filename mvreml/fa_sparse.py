"""The factor formulation of fa(k) / rr(k) terms (Thompson, Cullis, Smith & Gilmour 2003).

A term ``fa(site, k):vm(gen, ped)`` has u = (I_q (x) Lambda) f + delta (level-major), with
var(f) = K (x) I_k and var(delta) = K (x) Psi. Instead of a dense c x c block of G^-1 per
pair of genotypes, the mixed-model equations carry k factor scores per genotype (a random
term of k columns whose Z values are the loadings lambda_{s, r} of the record's site s) and
one specific effect per site and genotype (c random terms of one column each, variance
psi_s K); rr(k) has no specific effects, so its singular G = Lambda Lambda' never has to be
inverted. V = Z G Z' + R is the same matrix, so log L and its derivatives are the same
functions of theta as in the dense formulation (:class:`mvreml.likelihood.REMLModel`),
which the tests check to 1e-8.

The pattern of the equations is fixed; the values of the score columns of W move with
Lambda, so the map of W'R^-1 W into C is refilled at every iterate (one compiled pass over
the record pairs). Derivatives with respect to a loading lambda_{s r} (dT = Z_s (I (x) E_sr)):

* y'P dV P y = 2 sum_{records i at s} (R^-1 e)_i v_i fhat_{g(i) r};
* tr(P dV) = tr(C^-1 dC) = 2 sum_{pairs (a, b), b at s} R^-1_ab v_b sum_{j in W_a}
  W_aj C^{j, f(g(b), r)}: C^-1 only inside the pattern of C;
* the working variate dV P y = dT fhat + T (K (x) I) dT' P y, one solve with K^-1 (its
  Cholesky factor is computed once per model); the AI matrix takes every variate as
  W x + a (here x = K h_s on the scores of factor r, a = dT fhat on the site's records) and
  needs no dense N x n_theta block (mvreml.fa_ai).

A Result reads the fit through :class:`mvreml.fa_result.FactorResultView`: BLUPs in the dense layout, PEVs
diag(J C^-1 J') with J the map u = Lambda f + delta (lambda_s' C^{f_g f_g} lambda_s +
2 lambda_s' C^{f_g delta_gs} + C^{delta_gs delta_gs}; every (f_g, delta_gs) link is put in
the pattern of C for this), predictions by solves with J C^-1 J'. No dense formulation is
built.
"""
from __future__ import annotations

import copy
from functools import partial

import numpy as np
import scipy.sparse as sp

from ._core import mme as _k
from .fa_ai import SplitVariates
from .likelihood import LOG2PI, Evaluation, Infeasible, REMLModel
from .mme import MMEPattern, _i64

#: fa(k) on at least this many levels is fitted in the factor formulation (rr always is);
#: below it the dense c x c block per genotype is small and the dense formulation (which
#: has EM updates for fa) is used.
SPARSE_MIN_LEVELS = 12


def factor_block(design, blocks) -> int | None:
    """Index of the one fa / rr block the factor formulation applies to, or None.

    It applies to a random term whose whole compound dimension is one fa(k) or rr(k)
    structure (``fa(site, k):gen``, ``fa(site, k):vm(gen, ped)``, ``fa(trait, k):animal``),
    in a model without a spatial residual, when every record has at most one entry in the
    term; rr always, fa on at least :data:`SPARSE_MIN_LEVELS` levels.
    """
    if design.lattice is not None:
        return None
    found = None
    for i, b in enumerate(blocks):
        if b.k is None or b.structure.name not in ("fa", "rr"):
            continue
        rd = design.random[b.k]
        if len(np.unique(rd.obs_rows)) != len(rd.obs_rows):
            continue
        if b.structure.name == "fa" and b.structure.t < SPARSE_MIN_LEVELS:
            continue
        if found is not None:
            return None          # one factor term per model in this formulation
        found = i
    return found


def _term_copy(rd, rows, cols, vals, labels, name):
    """A RandomDesign on rd's levels and K^-1 with other Z entries and compound labels."""
    new = copy.copy(rd)
    new.dims = [(name, tuple(labels))]
    new.compound = list(labels)
    new.bases = {}
    new.obs_rows, new.obs_cols, new.obs_vals = _i64(rows), _i64(cols), np.asarray(vals, float)
    return new


def _term_offsets(design) -> list:
    """First equation of every random term of a design (MMEPattern's order: X, then the terms)."""
    return list(design.p + np.cumsum([0] + [rd.q * rd.t for rd in design.random])[:-1])


class _LinkedPattern(MMEPattern):
    """MMEPattern with extra (structurally zero) entries (rows, cols) in the pattern of C."""

    def __init__(self, design, links=None):
        self._links = links
        super().__init__(design)

    def _lower_pattern(self, design, w_indptr, w_indices, kinvs):
        indptr, indices = super()._lower_pattern(design, w_indptr, w_indices, kinvs)
        if self._links is None:
            return indptr, indices
        P = self.n_eq
        r, c = (np.asarray(x, np.int64) for x in self._links)
        A = sp.csc_matrix((np.ones(len(indices)), indices, indptr), shape=(P, P))
        B = sp.csc_matrix((np.ones(len(r)), (np.maximum(r, c), np.minimum(r, c))), shape=(P, P))
        U = (A + B).tocsc()
        U.sum_duplicates()
        U.sort_indices()
        idx = indices.dtype
        return U.indptr.astype(idx), U.indices.astype(idx)


class FactorREMLModel(REMLModel):
    """REMLModel whose fa / rr term ``blocks[fa_index]`` is fitted in the factor formulation.

    ``evaluate`` returns the Evaluation of the dense model (same log L, score, AI; the
    solution in the dense layout: u = Lambda f + delta), with ``em`` None for the factor
    term (no EM update: AI steps only) and ``cinv`` None. ``pattern``, ``factor`` and
    ``selinv`` are those of the factor formulation.
    """

    #: the loadings' score needs C^-1 before the AI solves: the selected inverse goes into a
    #: buffer of its own and leaves the factor usable (no refactorization for the AI step)
    selinv_in_place = False

    def __init__(self, design, blocks, fa_index: int, ordering: str = "default", timer=None):
        self.design = design
        self.blocks = blocks
        self.res_blocks = [b for b in blocks if b.k is None]
        self.n_random = len(blocks) - len(self.res_blocks)
        self.res_block = self.res_blocks[-1]
        from ._timing import Timer
        self.timer = timer if timer is not None else Timer()
        self.ordering = ordering
        self.n_theta = blocks[-1].stop
        self.p = design.p
        self.N = design.n_obs
        self.pattern_count = np.bincount(design.unit_pattern, minlength=len(design.patterns))
        self.obs_per_unit = np.diff(design.unit_start)
        self.logw = float(np.sum(self.obs_per_unit * np.log(design.weights)))
        self.factor = self.selinv = self.factor_theta = None
        self.backend = None          # the factor formulation runs on the engine's CHOLMOD only
        self._fixed_pos = False      # as REMLModel: the fixed block's positions, looked up once
        self.fa_index = fa_index
        self.fb = blocks[fa_index]
        self.rr = self.fb.structure.name == "rr"
        self._build_inner()

    # ------------------------------------------------------------------ construction
    def _build_inner(self):
        d = self.design
        fb = self.fb
        rd = d.random[fb.k]
        c = rd.t
        k = fb.structure.k
        self.c, self.k, self.q = c, k, rd.q
        rows = rd.obs_rows
        vals = np.ones(len(rows)) if rd.obs_vals is None else np.asarray(rd.obs_vals, float)
        g, s = rd.obs_cols // c, rd.obs_cols % c
        self.rec, self.rec_g, self.rec_s, self.rec_v = rows, g, s, vals
        labels = [str(x) for x in rd.comp_labels]
        # the factor scores: k entries per record, value v (lambda = 1 while the pattern is built)
        f_rd = _term_copy(rd, np.repeat(rows, k), (g[:, None] * k + np.arange(k)).ravel(),
                          np.repeat(vals, k), [f"fa{r + 1}" for r in range(k)], "factor")
        inner = []          # (kind, site or None, RandomDesign); kind: "term", "score", "specific"
        for j, other in enumerate(d.random):
            if j != fb.k:
                inner.append(("term", j, other))
                continue
            inner.append(("score", None, f_rd))
            if not self.rr:
                for si in range(c):
                    mine = s == si
                    inner.append(("specific", si, _term_copy(rd, rows[mine], g[mine], vals[mine],
                                                             [labels[si]], "specific")))
        self.inner = inner
        idesign = copy.copy(d)
        idesign.random = [x[2] for x in inner]
        self.idesign = idesign
        # the links (f_g r, delta_g s) of every level and site enter the pattern even where no
        # record makes them (pedigree-only levels, a genotype not tried at a site): the PEVs of
        # u = Lambda f + delta need C^-1 there (a k x c block per level: little fill)
        links = None
        if not self.rr:
            offs = _term_offsets(idesign)
            f_off = offs[next(i for i, x in enumerate(inner) if x[0] == "score")]
            d_off = np.array([offs[i] for i, x in enumerate(inner) if x[0] == "specific"], np.int64)
            gg, ss, rr = np.meshgrid(np.arange(rd.q), np.arange(c), np.arange(k), indexing="ij")
            links = ((f_off + gg * k + rr).ravel(), (d_off[ss] + gg).ravel())
        with self.timer("mme_pattern"):
            ip = _LinkedPattern(idesign, links)
        self.ip = self.pattern = ip       # the base class's pieces read self.pattern
        pu = ip.pair_unit
        self.pair_pattern = d.unit_pattern[pu]
        self.pair_w = d.weights[pu]
        self.score_pos = next(i for i, x in enumerate(inner) if x[0] == "score")
        off_f = ip.offsets[self.score_pos]
        W = ip.W
        wrow = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
        in_f = (W.indices >= off_f) & (W.indices < off_f + self.q * k)
        self.wf_idx = np.flatnonzero(in_f)                     # W.data entries of the scores
        site_of_rec = np.full(self.N, -1, np.int64)
        site_of_rec[rows] = s
        self.wf_site = site_of_rec[wrow[self.wf_idx]]
        self.wf_r = (W.indices[self.wf_idx] - off_f) % k
        self.wf_base = W.data[self.wf_idx].copy()
        # the trace of the loadings' score: for every pair (a, b) whose b has an entry in the
        # term, every entry j of W's row a, and every factor r: the position of
        # C^{j, f(g(b), r)} in the lower pattern of C (searched once)
        entry_of = np.full(self.N, -1, np.int64)
        entry_of[rows] = np.arange(len(rows))
        pa, pb = ip.pair_a, ip.pair_b
        eb = entry_of[pb]
        keep = np.flatnonzero(eb >= 0)
        na = np.diff(W.indptr)[pa[keep]]
        tp = np.repeat(keep, na)                                # pair of every (pair, j)
        first = np.repeat(W.indptr[pa[keep]], na)
        wj = first + (np.arange(len(tp)) - np.repeat(np.cumsum(na) - na, na))
        self.tr_pair, self.tr_wj, self.tr_entry = tp, wj, eb[tp]
        colj = W.indices[wj].astype(np.int64)
        P = ip.n_eq
        ccol = np.repeat(np.arange(P, dtype=np.int64), np.diff(ip.indptr))
        keys = ccol * P + ip.indices.astype(np.int64)          # sorted (CSC, rows sorted)
        self._keys = keys
        pos = np.empty((len(tp), k), np.int64)
        for r in range(k):
            e = off_f + g[self.tr_entry] * k + r
            lo, hi = np.minimum(colj, e), np.maximum(colj, e)
            key = lo * P + hi
            at = np.searchsorted(keys, key)
            if np.any(at >= len(keys)) or np.any(keys[np.minimum(at, len(keys) - 1)] != key):
                raise RuntimeError("internal error: a loading's trace entry is outside the pattern of C")
            pos[:, r] = at
        self.tr_pos = pos
        self.kfactor = None
        # R^-1 diagonal: one pair (a, a) per record, in record order
        self._diagonal_r = len(ip.pair_a) == self.N and bool(np.all(ip.pair_a == np.arange(self.N))) \
            and bool(np.all(ip.pair_b == ip.pair_a))
        self.Wcur = W.copy()
        # the term's entries (records) of every site, for the loadings' variates
        order = np.argsort(s, kind="stable")
        self._site_entries = np.split(order, np.searchsorted(s[order], np.arange(1, c)))
        self._wf_ptr = (_i64(ip.M_R.indptr), _i64(ip.M_Rdiag.indptr))

    def positions(self, rows, cols) -> np.ndarray:
        """Positions of entries (rows, cols) of C (either triangle) in its lower pattern."""
        P = self.ip.n_eq
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        key = np.minimum(rows, cols) * P + np.maximum(rows, cols)
        at = np.searchsorted(self._keys, key)
        if np.any(at >= len(self._keys)) or np.any(self._keys[np.minimum(at, len(self._keys) - 1)] != key):
            raise RuntimeError("internal error: an entry is outside the pattern of C")
        return at

    def _set_loadings(self, L: np.ndarray):
        """W's score columns and the map of W'R^-1 W into C at loadings L (c x k)."""
        ip = self.ip
        # a copy: the pattern's W keeps its construction values (the checkpoint's signature)
        W = self.Wcur
        W.data[self.wf_idx] = self.wf_base * L[self.wf_site, self.wf_r]
        m_ptr, d_ptr = self._wf_ptr
        M, D = ip.M_R, ip.M_Rdiag
        missing = _k.residual_map(_i64(W.indptr), _i64(W.indices), np.ascontiguousarray(W.data),
                                  _i64(ip.pair_a), _i64(ip.pair_b), _i64(ip.indptr), ip.indices,
                                  m_ptr, M.indices, M.data, d_ptr, D.indices, D.data, True)
        if missing:
            raise RuntimeError("internal error: products outside the pattern of C")

    def _k_times(self, B: np.ndarray) -> np.ndarray:
        """K B (K^-1 of the term factorized once)."""
        rd = self.design.random[self.fb.k]
        if rd.identity:
            return B
        if self.kfactor is None:
            from .cholmod import cholesky
            self.kfactor = cholesky(sp.csc_matrix(rd.kinv))
        return np.asarray(self.kfactor(B))

    # ------------------------------------------------------------------ pieces
    def _inner_ginv(self, theta, mats):
        """G^-1 of every inner term and log|G| of all: the other terms' own, I_k for the
        scores, 1 / psi_s for the specific effects."""
        fb = self.fb
        rd = self.design.random[fb.k]
        psi = None if self.rr else np.asarray(theta[fb.slice][-self.c:], float)
        ginv, logdet = [], 0.0
        for kind, j, ird in self.inner:
            if kind == "term":
                b = self.blocks[self._block_of_term(j)]
                G = mats[self._block_of_term(j)]
                try:
                    Lg = np.linalg.cholesky(G)
                except np.linalg.LinAlgError:
                    raise Infeasible(f"covariance matrix of {b.name!r} not positive definite")
                Gi = np.linalg.inv(G)
                ginv.append(0.5 * (Gi + Gi.T))
                logdet += ird.q * 2.0 * np.log(np.diag(Lg)).sum() + ird.t * ird.logdet_k
            elif kind == "score":
                ginv.append(np.eye(self.k))
                logdet += self.k * rd.logdet_k
            else:
                if not psi[j] > 0:
                    raise Infeasible(f"specific variance {j + 1} of {fb.name!r} not positive")
                ginv.append(np.array([[1.0 / psi[j]]]))
                logdet += rd.q * np.log(psi[j]) + rd.logdet_k
        return ginv, logdet

    def _block_of_term(self, j: int) -> int:
        return next(i for i, b in enumerate(self.blocks) if b.k == j)

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, theta: np.ndarray, derivatives: bool = True) -> Evaluation:
        """log L (and score, AI when `derivatives`) at theta, in the factor formulation."""
        d = self.design
        ip = self.ip
        theta = np.asarray(theta, float)
        fb = self.fb
        mats = []
        for b in self.blocks:
            mats.append(None if b is fb else b.structure.matrix(theta[b.slice]))
        L = fb.structure.loadings(theta[fb.slice])
        ginv, logdet_g = self._inner_ginv(theta, mats)
        nr = self.n_random
        rstack, rlogdet = self._residual_parts(mats[nr:])
        rinv_pairs = self._pair_values(rstack)
        self._rinv_pairs = rinv_pairs
        self._rdiag = rinv_pairs if self._diagonal_r else None
        logdet_r = float(self.pattern_count @ rlogdet) - self.logw
        with self.timer("assemble"):
            self._set_loadings(L)
            C = ip.assemble(rinv_pairs, ginv)
            Rinv = ip.rinv_matrix(rinv_pairs)
            ry = Rinv @ d.y
            rhs = self.Wcur.T @ ry
        self.factor_theta = None
        logdet_c = self._factorize(C)
        self.factor_theta = theta.copy()
        with self.timer("solve"):
            sol = self.factor(rhs)
        e = d.y - self.Wcur @ sol
        ypy = float(e @ (Rinv @ e))
        for Gi, ird, off in zip(ginv, self.idesign.random, ip.offsets):
            U = sol[off:off + ird.q * ird.t].reshape(ird.q, ird.t)
            ypy += float(np.sum((ird.kinv @ U) * (U @ Gi)))
        loglik = -0.5 * ((self.N - self.p) * LOG2PI + logdet_c + logdet_r + logdet_g + ypy)
        ev = Evaluation(theta=theta.copy(), loglik=loglik, solution=self._dense_solution(sol, L),
                        residuals=e, logdet_c=logdet_c, ypy=ypy)
        ev.inner_solution = sol
        self._evaluations += 1
        if derivatives:
            self._inner_derivatives(ev, sol, mats, ginv, rstack, Rinv, L)
        else:
            ev.pending = (self._evaluations, partial(self._inner_derivatives, sol=sol, mats=mats, ginv=ginv,
                                                     rstack=rstack, Rinv=Rinv, L=L))
        return ev

    def _dense_solution(self, sol, L):
        """The solution in the dense layout: fixed effects, then every term's q x c block
        (u_g = Lambda f_g + delta_g for the factor term)."""
        ip = self.ip
        parts = [sol[:self.p]]
        q, c, k = self.q, self.c, self.k
        for i, (kind, j, ird) in enumerate(self.inner):
            off = ip.offsets[i]
            if kind == "term":
                parts.append(sol[off:off + ird.q * ird.t])
            elif kind == "score":
                U = sol[off:off + q * k].reshape(q, k) @ L.T
                if not self.rr:
                    for si in range(c):
                        o = ip.offsets[i + 1 + si]
                        U[:, si] += sol[o:o + q]
                parts.append(U.ravel())
        return np.concatenate(parts)

    def _inner_derivatives(self, ev, sol, mats, ginv, rstack, Rinv, L):
        ip = self.ip
        fb = self.fb
        c = self.c
        with self.timer("selinv"):
            x = self.selinv.values(self.factor)
        score = np.zeros(self.n_theta)
        F = SplitVariates(ip.n_eq, self.N, self.n_theta)
        em = [None] * len(self.blocks)
        e = ev.residuals
        with self.timer("score"):
            for i, (kind, j, ird) in enumerate(self.inner):
                off = ip.offsets[i]
                U = sol[off:off + ird.q * ird.t].reshape(ird.q, ird.t)
                if kind == "score":
                    continue
                S = U.T @ (ird.kinv @ U) + ip.term_trace(i, x)
                S = 0.5 * (S + S.T)
                Gi = ginv[i]
                if kind == "term":
                    bi = self._block_of_term(j)
                    b = self.blocks[bi]
                    em[bi] = S / ird.q
                    dG = b.structure.derivatives(ev.theta[b.slice])
                    cols = range(b.start, b.stop)
                else:       # specific variance psi_j: dG = 1 on its own 1 x 1 block
                    dG = np.ones((1, 1, 1))
                    cols = [fb.stop - c + j]
                rows = off + np.arange(ird.q * ird.t)
                for jj, col in enumerate(cols):
                    A = Gi @ dG[jj]
                    score[col] = -0.5 * (ird.q * np.trace(A) - np.trace(A @ Gi @ S))
                    # the variate Z (U A): x = U A on the term's equations, D x = K^-1 U A G^-1
                    UA = U @ A
                    F.equations(col, rows, UA.ravel(), (ird.kinv @ UA @ Gi).ravel())
            self._loading_score(ev, sol, x, Rinv, L, score, F)
            Q = ip.residual_trace_pairs(x)
            ee = e[ip.pair_a] * e[ip.pair_b] + Q
            esum = self._residual_sums(ee)
            for rb, R0, bi in zip(self.res_blocks, mats[self.n_random:], range(self.n_random, len(self.blocks))):
                tr1, dpairs = self._residual_variates(rb, ev, rstack, F.columns())
                for jj in range(rb.stop - rb.start):
                    score[rb.start + jj] = -0.5 * (tr1[jj] + dpairs[jj] @ ee)
                em[bi] = self._residual_em(R0, rstack, ee, rb.section or 0, esum)
        with self.timer("ai"):
            ev.ai = F.ai(self.Wcur, Rinv, self.factor, rdiag=self._rdiag)
        ev.score = score
        ev.em = em

    def _loading_score(self, ev, sol, x, Rinv, L, score, F):
        """Score and working variates of the loadings lambda_{s r} (free ones: s >= r)."""
        ip = self.ip
        fb = self.fb
        q, c, k = self.q, self.c, self.k
        off_f = ip.offsets[self.score_pos]
        fhat = sol[off_f:off_f + q * k].reshape(q, k)
        py = Rinv @ ev.residuals                              # P y = R^-1 e
        g, s, v, rec = self.rec_g, self.rec_s, self.rec_v, self.rec
        # data part: 2 sum_i (R^-1 e)_i v_i fhat_{g(i) r}, by site
        # (sums by bincount: np.add.at is 5-10x slower)
        pv = py[rec] * v
        data = np.column_stack([np.bincount(s, weights=pv * fhat[g, r], minlength=c) for r in range(k)])
        # trace part: 2 sum over pairs and W entries of R^-1_ab v_b W_aj C^{j, f(g(b), r)}
        w = self._rinv_pairs[self.tr_pair] * v[self.tr_entry] * self.Wcur.data[self.tr_wj]
        st = s[self.tr_entry]
        tr = np.column_stack([np.bincount(st, weights=w * x[self.tr_pos[:, r]], minlength=c) for r in range(k)])
        grad = -0.5 * (2.0 * tr - 2.0 * data)
        # working variates: F_sr = [s_i = s] v_i fhat_{g_i r} + v_i lambda_{s_i r} (K h_s)_{g_i},
        # h_s = sum over the records of site s of v_i (P y)_i, by genotype
        H = np.bincount(g * c + s, weights=pv, minlength=q * c).reshape(q, c)
        KH = self._k_times(H)
        DKH = self.design.random[fb.k].kinv @ KH      # D x of the scores' x (their G^-1 is I_k)
        slots = off_f + np.arange(q) * k
        i_idx, m_idx = fb.structure._loading_index()
        for p_, (si, r) in enumerate(zip(i_idx, m_idx)):
            col = fb.start + p_
            score[col] = grad[si, r]
            # f = T (K (x) I) dT'Py + dT fhat: x = K h_s on the scores of factor r, a = the
            # site's records' v_i fhat_{g_i r}
            F.equations(col, slots + r, KH[:, si], DKH[:, si])
            mine = self._site_entries[si]
            F.records(col, rec[mine], v[mine] * fhat[g[mine], r])

    # ------------------------------------------------------------------ the dense layout
    def layout_map(self, theta) -> sp.csr_matrix:
        """J (dense equations x inner equations): the dense layout's effects as linear
        combinations of the inner ones (u_g = Lambda f_g + delta_g; identity elsewhere), so
        that the dense prediction-error covariance is J C^-1 J'."""
        ip = self.ip
        L = self.fb.structure.loadings(np.asarray(theta, float)[self.fb.slice])
        q, c, k = self.q, self.c, self.k
        rows, cols, vals = [np.arange(self.p)], [np.arange(self.p)], [np.ones(self.p)]
        at = self.p
        for i, (kind, j, ird) in enumerate(self.inner):
            off = ip.offsets[i]
            if kind == "term":
                n = ird.q * ird.t
                rows.append(at + np.arange(n)), cols.append(off + np.arange(n)), vals.append(np.ones(n))
                at += n
            elif kind == "score":
                gg, ss, rr = np.meshgrid(np.arange(q), np.arange(c), np.arange(k), indexing="ij")
                rows.append((at + gg * c + ss).ravel()), cols.append((off + gg * k + rr).ravel())
                vals.append(L[ss, rr].ravel())
                if not self.rr:
                    for si in range(c):
                        o = ip.offsets[i + 1 + si]
                        rows.append(at + np.arange(q) * c + si), cols.append(o + np.arange(q))
                        vals.append(np.ones(q))
                at += q * c
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(at, ip.n_eq))


def make_model(design, blocks, ordering: str = "default", timer=None) -> REMLModel:
    """The REML model of a design: the factor formulation for the one fa / rr term it applies
    to (:func:`factor_block`), else the dense :class:`mvreml.likelihood.REMLModel`.

    Raises
    ------
    FormulaError
        An rr(k) term the factor formulation cannot take (in a direct product, beside another
        fa / rr term, with a spatial residual, or records with several entries in the term).
    """
    from .errors import FormulaError

    i = factor_block(design, blocks)
    if i is None:
        for b in blocks:
            if b.k is not None and "rr(" in str(b.structure):
                raise FormulaError(f"{b.name!r}: rr(k) is fitted in the factor formulation, which takes one "
                                 "rr / fa term per model on its own (not in a direct product with another "
                                 "structure), no spatial residual and one entry per record", term=b.name)
        return REMLModel(design, blocks, ordering=ordering, timer=timer)
    return FactorREMLModel(design, blocks, i, ordering=ordering, timer=timer)
