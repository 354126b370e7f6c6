"""One run of the AI-REML iteration: the step on the working parameters and everything that
keeps it inside the parameter space (holds, reduced-rank matrices, identifiability), EM,
the KKT release check, the unbounded-likelihood check, and the reported end point.

Used by :func:`mvreml.reml.iterate`; see that module for the outline.
"""
from __future__ import annotations

import numpy as np

from . import diagnose
from ._workspace import Holds, Space, box_bounds, feasible, kinds, labels, psd_room, vech_to_theta
from .boundary import (FLOOR, FLOOR_FINAL, Reduced, describe_reduced, is_psd_block, matrix_gradient,
                       theta_jacobian, theta_of_matrix, trait_scales)
from .ar1_levels import hold_orphan_correlations
from .likelihood import Infeasible
from .structures import vech_pairs

BOUND_REL = FLOOR      # a variance held at its boundary sits at this fraction of its scale (then
                       # at FLOOR_FINAL in the reported fit, see Iteration.polish)
SMALL_REL = 1e-3       # a variance (eigenvalue) below this fraction of its scale may be held there
TAU = 0.9              # fraction of the way to the boundary a shortened step goes
RELEASE_GAIN = 1e-7    # a held parameter is released when that would gain more log L than this
UNBOUNDED_SUSPECT = 0.05   # eps dlogL/deps of a held residual direction below -this: check for +inf


class Iteration:
    """State and steps of one run of :func:`mvreml.reml.iterate` (kept together so each step is short).

    Parameters
    ----------
    model : REMLModel
    fixed : ndarray of bool
        Parameters held by the user.
    scale : ndarray
        Typical magnitude of each parameter.
    control : mvreml.reml.Control
    constraints : mvreml.constraints.Constraints, optional
        Groups of parameters tied by fixed ratios: one working parameter per group, every
        hold of a group's first member holds the group (theta is projected on the
        constraints after every change).
    """

    def __init__(self, model, fixed, scale, control, constraints=None):
        self.model = model
        self.con = constraints
        self.fixed = fixed
        self.scale = scale
        self.control = control
        self.labels = labels(model)
        self.path: list = []      # theta after the last two iterates (mvreml._geometric)
        self.kinds = kinds(model)
        self.lower, self.upper, self.box = box_bounds(model)
        if constraints is not None:
            for g in constraints.groups:
                g = list(g)
                r = constraints.ratio[g]
                # a group's box: where every member is inside its own (ratios are positive)
                self.lower[g[0]] = np.max(self.lower[g] / r)
                self.upper[g[0]] = np.min(self.upper[g] / r)
                self.box[g[0]] = self.box[g].any()
        self.holds = Holds(len(scale))
        self.d = {bi: trait_scales(b, scale) for bi, b in enumerate(model.blocks) if is_psd_block(b)}
        self.messages: list = []
        self.warnings: list = []

    def space(self, theta):
        """The working parameters at theta under the current holds."""
        return Space(self.model, theta, self.fixed, self.holds, self.lower, self.upper, self.scale, self.d,
                     self.con)

    def tie(self, theta):
        """theta with the constrained parameters set from their groups' first members."""
        return theta if self.con is None else self.con.project(theta)

    def _direction(self, i):
        """d theta / d theta_i of parameter i as a working parameter (its group's column)."""
        if self.con is not None:
            return self.con.column(i)
        j = np.zeros(len(self.scale))
        j[i] = 1.0
        return j

    def _scaled(self, bi, G):
        return G / np.outer(self.d[bi], self.d[bi])

    # ------------------------------------------------------------------ the step
    def step(self, ev, theta, hold: bool = True):
        """AI step on the working parameters, after holding what must be held.

        ``hold=False``: no new boundary holds (identifiability holds are always made).
        Returns (theta, space, delta, decrement); delta None when no AI step exists.
        """
        space = None
        for _ in range(len(theta) + 2):
            space = self.space(theta)
            g = space.J.T @ ev.score
            A = self._information(ev, theta, space)
            delta, decrement, flat = diagnose.newton_step(A, g, space.scale)
            if flat:
                theta = self._hold_unidentified(flat[0], space, theta)
                if theta is None:
                    return None, space, None, np.inf
                continue
            changed = False
            if hold:
                changed, theta = self._hold_boundaries(space, theta, delta)
            if not changed:
                return theta, space, delta, decrement
        return theta, space, None, np.inf

    def _information(self, ev, theta, space):
        """J' AI J plus, for matrices held at reduced rank, the curvature of their factor scale."""
        A = space.J.T @ ev.ai @ space.J
        for bi, R in self.holds.reduced.items():
            ks = space.of_block(bi)
            if ks:
                b = self.model.blocks[bi]
                Gbar = matrix_gradient(b.structure, theta[b.slice], ev.score[b.slice])
                A[np.ix_(ks, ks)] += R.curvature(Gbar)
        return A

    def _hold_boundaries(self, space, theta, delta):
        """Hold small variances and singular matrices that the step pushes out of the space."""
        model, changed = self.model, False
        theta = theta.copy()
        pos = space.position(model, theta, self.holds)
        for k, (bi, kind, i) in enumerate(space.owner):
            if kind == "theta" and self.box[i]:
                near = SMALL_REL * self.scale[i]
                if theta[i] - self.lower[i] < near and theta[i] + delta[k] < self.lower[i]:
                    side = -1.0
                elif self.upper[i] - theta[i] < near and theta[i] + delta[k] > self.upper[i]:
                    side = 1.0
                else:
                    continue
                self.holds.box[i], self.holds.side[i] = True, side
                theta[i] = self._at_bound(i, side, BOUND_REL)
                changed = True
        changed = hold_orphan_correlations(self, theta) or changed
        for bi, R in list(self.holds.reduced.items()):
            ks = space.of_block(bi)
            if not ks:
                continue
            piv = R.pivot_positions()
            low = [p for p in piv if pos[ks[p]] ** 2 < SMALL_REL and pos[ks[p]] + delta[ks[p]] < 0]
            if R.r and (low or R.eigenvalues()[0] < SMALL_REL ** 2):
                theta = self._reduce(bi, R.scaled(), R.r - 1, theta)
                changed = True
        for bi in self.d:
            ks = space.of_block(bi)
            if bi in self.holds.reduced or not ks:
                continue
            b = model.blocks[bi]
            S = self._scaled(bi, b.structure.matrix(theta[b.slice]))
            Sc = S + self._scaled(bi, space.block_step(model, bi, theta, delta))
            w, V = np.linalg.eigh(S)
            dw = np.einsum("ij,ik,kj->j", V, Sc, V) - w
            drop = (w < SMALL_REL) & (dw < 0)
            if drop.any() and np.linalg.eigvalsh(Sc)[0] < 0 and not self.holds.ident_el.get(bi):
                theta = self._reduce(bi, S, int((~drop).sum()), theta)
                changed = True
        return changed, self.tie(theta)

    def _at_bound(self, i, side, floor):
        """Value of parameter i held at its lower (side -1) or upper (+1) bound."""
        return self.lower[i] + floor * self.scale[i] if side < 0 else self.upper[i] - floor * self.scale[i]

    def _reduce(self, bi, H, r, theta):
        """Hold block bi on the boundary at rank r."""
        b = self.model.blocks[bi]
        R = Reduced.from_scaled(H, max(r, 0), self.d[bi])
        self.holds.reduced[bi] = R
        theta = theta.copy()
        theta[b.slice] = theta_of_matrix(b.structure, R.matrix())
        return theta

    def _hold_unidentified(self, direction, space, theta):
        """Name a flat direction of log L and hold one parameter of it. None: nothing to hold."""
        v_theta = space.J @ (direction.loadings / space.scale) * self.scale
        if not np.any(v_theta):
            return None
        named = diagnose.NullDirection(direction.eigenvalue, v_theta / np.max(np.abs(v_theta)))
        top = direction.top()
        blocks = {space.owner[k][0] for k in top}

        def key(k):                        # variances nearest their bound first, then the rest
            bi, kind, i = space.owner[k]
            if kind == "theta" and self.kinds[i] == "variance":
                return (0, (theta[i] - self.lower[i]) / self.scale[i], k)
            if kind == "vech" or kind == "eta":
                b = self.model.blocks[bi]
                return (1, float(np.trace(self._scaled(bi, b.structure.matrix(theta[b.slice])))), k)
            return (2, 0.0, k)

        k = min(top, key=key)
        bi, kind, i = space.owner[k]
        b = self.model.blocks[bi]
        theta = theta.copy()
        if kind == "eta" or (kind == "vech" and len(blocks) > 1):
            R = self.holds.reduced.get(bi)
            r = 0 if len(blocks) > 1 or R is None else R.r - 1
            if R is not None and R.r == 0:
                return None
            theta = self._reduce(bi, self._scaled(bi, b.structure.matrix(theta[b.slice])), r, theta)
            if r == 0:
                self.holds.ident_blocks.add(bi)
            key = ("block", bi)
            what = f"the {b.name} matrix held at {'zero' if r == 0 else f'rank {r}'} (boundary)"
            names = sorted({self.model.blocks[space.owner[j][0]].name for j in top})
            if len(names) == 2 and r == 0:
                self.holds.texts[key] = (f"the {names[0]} and {names[1]} covariance matrices are confounded: only "
                                         f"their sum is identified; {what} so that the rest can be estimated")
                return theta
        elif kind == "vech":
            self.holds.ident_el.setdefault(bi, set()).add(i)
            key = ("vech", bi, i)
            a, c = vech_pairs(b.structure.t)[i]
            what = (f"{b.name}[{b.structure.traits[a]}, {b.structure.traits[c]}] held at its current value "
                    f"{b.structure.matrix(theta[b.slice])[a, c]:.4g}")
        elif self.kinds[i] == "variance" and self.box[i]:
            self.holds.side[i] = -1.0
            self.holds.ident[i] = True
            target = self.lower[i] + BOUND_REL * self.scale[i]
            # slide along the flat direction (log L unchanged) until it reaches its bound
            step = space.J @ (direction.loadings / space.scale)
            moved = theta + (target - theta[i]) / step[i] * step if step[i] != 0 else theta
            if step[i] != 0 and feasible(self.model, moved):
                theta = moved
            theta[i] = target
            key = ("theta", i)
            what = f"{self.labels[i]} held at its boundary (0)"
        else:
            self.holds.ident[i] = True
            key = ("theta", i)
            what = f"{self.labels[i]} held at its current value {theta[i]:.4g}"
        self.holds.texts[key] = (f"{diagnose.describe(named, self.labels, self.kinds)}; {what} so that the "
                                 "rest can be estimated")
        return self.tie(theta)

    # ------------------------------------------------------------------ candidates
    def step_lengths(self, theta, space, delta):
        """Per working parameter: the share of its step that keeps TAU of the way to the boundary.

        Box-bounded parameters each get their own; a matrix (natural or held) one for all of
        its working parameters."""
        pos = space.position(self.model, theta, self.holds)
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(delta < 0, (pos - space.lower) / -delta, np.inf)
            room = np.minimum(room, np.where(delta > 0, (space.upper - pos) / delta, np.inf))
        for bi in self.d:
            ks = space.of_block(bi)
            if not ks:
                continue
            if bi in self.holds.reduced:
                rb = float(np.min(room[ks]))
            else:
                b = self.model.blocks[bi]
                G = b.structure.matrix(theta[b.slice])
                rb = psd_room(G, space.block_step(self.model, bi, theta, delta))
            room[ks] = rb
        return np.where(room >= 1.0, 1.0, TAU * room)

    def em(self, ev, theta):
        """EM update of every free term (held matrices projected on their rank)."""
        new = theta.copy()
        reduced = dict(self.holds.reduced)
        for bi, (b, M) in enumerate(zip(self.model.blocks, ev.em)):
            if b.stop == b.start or self.fixed[b.slice].all() or M is None:
                continue          # (M None: a spatial residual, which has no EM update)
            M = 0.5 * (M + M.T)
            if bi in reduced:
                if bi not in self.holds.ident_blocks:
                    reduced[bi] = Reduced.from_matrix(M, reduced[bi].r, self.d[bi])
                    new[b.slice] = theta_of_matrix(b.structure, reduced[bi].matrix())
                continue
            if bi in self.d:
                G = b.structure.matrix(theta[b.slice])
                for p in self.holds.ident_el.get(bi, ()):
                    a, c = vech_pairs(b.structure.t)[p]
                    M[a, c] = M[c, a] = G[a, c]
                cand = theta_of_matrix(b.structure, M) if np.linalg.eigvalsh(M)[0] > 0 else theta[b.slice]
            else:
                cand = np.asarray(b.structure.from_matrix(M), float)
                held = (self.holds.box | self.holds.ident | self.fixed)[b.slice]
                cand[held] = theta[b.slice][held]
            new[b.slice] = cand if b.structure.feasible(cand) else theta[b.slice]
        if self.con is not None:
            # each member's own EM update, then the group at their mean (a fallback step: the
            # iteration accepts it only if log L does not fall)
            new = self.con.pool(new)
            if not feasible(self.model, new):
                new = theta.copy()
        return new, reduced

    # ------------------------------------------------------------------ KKT release
    def release(self, ev, theta):
        """Release held parameters whose score points inside by a worthwhile amount.

        Returns (theta, changed, names)."""
        model, holds, names = self.model, self.holds, []
        theta = theta.copy()
        changed = False
        for i in np.flatnonzero(holds.box):
            if self.con is None:
                g, a = ev.score[i], ev.ai[i, i]
            else:                       # a group: its score and information along M's column
                j = self._direction(i)
                g, a = float(j @ ev.score), float(j @ ev.ai @ j)
            if g * holds.side[i] < 0 and a > 0 and g ** 2 / (2 * a) > RELEASE_GAIN \
                    and holds.released[i] < self.control.max_releases:
                holds.box[i] = False
                holds.released[i] += 1
                names.append(self.labels[i])
                changed = True
        for key in list(holds.texts):
            if key[0] in ("block", "ar1"):     # ar1: released with its term's variance (ar1_levels)
                continue
            if key[0] == "theta":
                i = key[1]
                j = self._direction(i)
                inward = float(j @ ev.score) * holds.side[i] < 0 if holds.side[i] else True
            else:
                b = model.blocks[key[1]]
                j = np.zeros(len(theta))
                j[b.slice] = theta_jacobian(b.structure, theta[b.slice])[:, key[2]]
                inward = True
            g, a = float(j @ ev.score), float(j @ ev.ai @ j)
            if inward and a > 0 and g * g / (2 * a) > RELEASE_GAIN \
                    and holds.ident_released < 4 * self.control.max_releases:
                holds.ident_released += 1   # one shared budget: a flat direction is re-found at once
                if key[0] == "theta":
                    holds.ident[key[1]] = False
                else:
                    holds.ident_el[key[1]].discard(key[2])
                del holds.texts[key]
                names.append("an unidentified-looking parameter")
                changed = True
        for bi, R in list(holds.reduced.items()):
            if holds.block_released.get(bi, 0) >= self.control.max_releases * R.t:
                continue
            b = model.blocks[bi]
            d = self.d[bi]
            Gb = matrix_gradient(b.structure, theta[b.slice], ev.score[b.slice]) * np.outer(d, d)
            N = R.null_space()
            w, V = np.linalg.eigh(N.T @ Gb @ N)
            if w.size == 0 or w[-1] <= 0:
                continue
            n = N @ V[:, -1]
            dG = np.outer(n, n) * np.outer(d, d)
            dth = theta_jacobian(b.structure, theta[b.slice]) @ np.array([dG[i, j] for i, j in vech_pairs(R.t)])
            a = float(dth @ ev.ai[b.slice, b.slice] @ dth)
            if a <= 0 or w[-1] ** 2 / (2 * a) <= RELEASE_GAIN:
                continue
            lam = float(np.clip(w[-1] / a, 1e-6, 1.0))
            H = R.scaled() + lam * np.outer(n, n)
            holds.block_released[bi] = holds.block_released.get(bi, 0) + 1
            holds.ident_blocks.discard(bi)
            holds.texts.pop(("block", bi), None)
            if R.r + 1 >= R.t:
                del holds.reduced[bi]
                theta[b.slice] = theta_of_matrix(b.structure, (H + FLOOR * np.eye(R.t)) * np.outer(d, d))
            else:
                theta = self._reduce(bi, H, R.r + 1, theta)
            names.append(f"a direction of the {b.name} matrix")
            changed = True
        return self.tie(theta), changed, ", ".join(names)

    # ------------------------------------------------------------------ unbounded log L
    def unbounded(self, ev, theta):
        """A residual direction whose variance log L wants at zero *without bound*.

        Held at a floor eps, a direction where log L tends to +infinity (the data fit that
        combination of traits exactly) has eps dlogL/deps ~ -(records)/2, a regular boundary
        has it ~ eps: the first is suspected from the score and confirmed by log L at floors
        10 and 100 times smaller (equal gains each time, instead of ten times smaller ones).
        Returns (description or None, confirmed).
        """
        bi = len(self.model.blocks) - 1
        b = self.model.blocks[bi]
        cands = []
        if bi in self.holds.reduced:
            R = self.holds.reduced[bi]
            N = R.null_space()
            if N.shape[1]:
                Gb = matrix_gradient(b.structure, theta[b.slice], ev.score[b.slice]) * np.outer(R.d, R.d)
                w, V = np.linalg.eigh(N.T @ Gb @ N)
                if R.floor * w[0] < -UNBOUNDED_SUSPECT:
                    cands.append(("matrix", N @ V[:, 0]))
        for i in np.flatnonzero(self.holds.box[b.slice]):
            j = b.start + i
            if self.kinds[j] == "variance" and BOUND_REL * self.scale[j] * ev.score[j] < -UNBOUNDED_SUSPECT:
                cands.append(("box", j))
        suspect = None
        for kind, what in cands:
            lls = []
            for f in (FLOOR, FLOOR * 1e-1, FLOOR * 1e-2):
                th = theta.copy()
                if kind == "matrix":
                    R = self.holds.reduced[bi]
                    th[b.slice] = theta_of_matrix(b.structure, Reduced(R.d, R.perm, R.L, floor=f).matrix())
                else:
                    th[what] = self.lower[what] + f * self.scale[what]
                    th = self.tie(th)
                try:
                    lls.append(self.model.evaluate(th, derivatives=False).loglik)
                except Infeasible:
                    break
            if kind == "box":
                text = f"the residual variance {self.labels[what]}"
            else:
                v = what / self.holds.reduced[bi].d
                v = v / np.max(np.abs(v))
                big = np.flatnonzero(np.abs(v) > 0.05)
                traits = b.structure.traits
                comb = " ".join(f"{'+' if v[j] >= 0 else '-'} {abs(v[j]):.3g} {traits[j]}" for j in big)
                text = f"the residual variance of {comb.lstrip('+ ')}"
            if len(lls) == 3 and lls[2] - lls[1] > 0.5 and lls[2] - lls[1] > 0.5 * (lls[1] - lls[0]):
                return text, True
            suspect = suspect or text
        return suspect, False

    # ------------------------------------------------------------------ the end
    def polish(self, ev, theta):
        """The reported fit: held variances and matrices moved from the iteration floor to
        FLOOR_FINAL (closer to the boundary itself; nothing else changes)."""
        new = theta.copy()
        moved = False
        for i in np.flatnonzero(self.holds.box | (self.holds.ident & self.box & (self.holds.side != 0))):
            new[i] = self._at_bound(i, self.holds.side[i], FLOOR_FINAL)
            moved = True
        for bi, R in self.holds.reduced.items():
            b = self.model.blocks[bi]
            R = Reduced(d=R.d, perm=R.perm, L=R.L, floor=FLOOR_FINAL)
            self.holds.reduced[bi] = R
            new[b.slice] = theta_of_matrix(b.structure, R.matrix())
            moved = True
        if not moved:
            return ev, theta
        new = self.tie(new)
        try:
            return self.model.evaluate(new), new
        except Infeasible:
            return ev, theta

    def finish(self, ev, theta):
        """AI^-1 through the working parameters, held masks, closing messages.

        Returns (ai_inverse, bound, reduced, singular): parameters held at a boundary (all of
        them), those of matrices held at reduced rank, those held because not identified."""
        n = len(theta)
        space = self.space(theta)
        A = self._information(ev, theta, space)
        ai_inv = np.zeros((n, n))
        if A.size:
            dirs = diagnose.null_directions(A, space.scale, diagnose.ILL_CONDITIONED)
            try:
                Ainv = np.linalg.inv(A) if not dirs else np.linalg.pinv(A)
            except np.linalg.LinAlgError:
                Ainv = np.linalg.pinv(A)
            ai_inv = space.J @ Ainv @ space.J.T
            for dr in dirs:
                v = space.J @ (dr.loadings / space.scale) * self.scale
                if not np.any(v):
                    continue
                named = diagnose.NullDirection(dr.eigenvalue, v / np.max(np.abs(v)))
                text = ("the average-information matrix is (nearly) singular at the solution: "
                        + diagnose.describe(named, self.labels, self.kinds, what="poorly identified")
                        + "; their standard errors are unreliable")
                self.messages.append(text)
                self.warnings.append(("IdentifiabilityWarning", text))
        texts = list(self.holds.texts.values())
        self.messages[:0] = texts
        self.warnings[:0] = [("IdentifiabilityWarning", text) for text in texts]
        reduced = np.zeros(n, bool)
        for bi, R in self.holds.reduced.items():
            b = self.model.blocks[bi]
            reduced[b.slice] = True
            if bi not in self.holds.ident_blocks:
                self.messages.append(describe_reduced(b, R))
        ident = self.holds.ident.copy()
        for bi, held in self.holds.ident_el.items():
            b = self.model.blocks[bi]
            for p in held:
                ident[b.start + vech_to_theta(b.structure)[p]] = True
        bound = self.holds.box | ident | reduced
        if self.con is not None:
            # a group is held as a whole: its members share the first member's state
            bound, ident = bound[self.con.leader], ident[self.con.leader]
        return ai_inv, bound, reduced, ident
