"""Working parameters of the AI-REML iteration: what is held where, and the map to theta.

:class:`Holds` records the parameters held at a boundary (box-bounded variances), held because
the data do not identify them, and the us / corgh matrices held at reduced rank
(:class:`mvreml.boundary.Reduced`). :class:`Space` turns that into the working parameters of
one iteration, with J = d theta / d w for the chain rule of the score and the AI matrix.
"""
from __future__ import annotations

import numpy as np

from .boundary import is_psd_block, theta_jacobian, theta_of_matrix
from .structures import vech_pairs


class Holds:
    """What is held where: box bounds, identifiability, matrices at reduced rank."""

    def __init__(self, n: int):
        self.box = np.zeros(n, bool)          # parameter held at a bound of its box (releasable)
        self.side = np.zeros(n)               # ... its lower (-1) or upper (+1) bound
        self.ident = np.zeros(n, bool)        # held because not identified
        self.ident_el: dict = {}              # PSD block -> vech positions held (not identified)
        self.texts: dict = {}                 # identifiability hold -> its message
        self.ident_released = 0
        self.released = np.zeros(n, int)
        self.reduced: dict = {}               # block index -> Reduced
        self.block_released: dict = {}
        self.ident_blocks: set = set()        # blocks zeroed because confounded

    def copy(self) -> "Holds":
        new = Holds(len(self.box))
        new.box, new.ident, new.released = self.box.copy(), self.ident.copy(), self.released.copy()
        new.side = self.side.copy()
        new.reduced, new.block_released = dict(self.reduced), dict(self.block_released)
        new.ident_el = {k: set(v) for k, v in self.ident_el.items()}
        new.ident_blocks = set(self.ident_blocks)
        new.texts = dict(self.texts)
        new.ident_released = self.ident_released
        return new


class Space:
    """Working parameters of one iteration: J = d theta / d w, bounds and scales of w.

    A parameter of a box-bounded term is its own working parameter ("theta"); a us / corgh
    matrix moves on its elements ("vech", so corgh steps are exactly us steps); a matrix held
    at reduced rank on the free entries of its factor ("eta"). Under equality / ratio
    constraints (:class:`mvreml.constraints.Constraints`) a group is one working parameter,
    owned by its first member, whose column of J is the group's column of M (theta = M phi).
    """

    def __init__(self, model, theta, fixed, holds: Holds, lower, upper, scale, d, constraints=None):
        n = len(theta)
        self.constraints = constraints
        cols, self.lower, self.upper, self.scale, self.owner = [], [], [], [], []

        def add(c, lo, up, sc, owner):
            cols.append(c)
            self.lower.append(lo)
            self.upper.append(up)
            self.scale.append(sc)
            self.owner.append(owner)

        for bi, b in enumerate(model.blocks):
            if fixed[b.slice].all() or b.stop == b.start:
                continue
            if bi in holds.reduced:
                R = holds.reduced[bi]
                Jb = theta_jacobian(b.structure, theta[b.slice]) @ R.dvech()
                piv = set(R.pivot_positions().tolist())
                for k in range(Jb.shape[1]):
                    c = np.zeros(n)
                    c[b.slice] = Jb[:, k]
                    add(c, 0.0 if k in piv else -np.inf, np.inf, 1.0, (bi, "eta", k))
            elif bi in d:
                Jb = theta_jacobian(b.structure, theta[b.slice])
                held = holds.ident_el.get(bi, set())
                for p, (i, j) in enumerate(vech_pairs(b.structure.t)):
                    if p in held:
                        continue
                    c = np.zeros(n)
                    c[b.slice] = Jb[:, p]
                    add(c, 0.0 if i == j else -np.inf, np.inf, d[bi][i] * d[bi][j], (bi, "vech", p))
            else:
                for i in range(b.start, b.stop):
                    if holds.box[i] or holds.ident[i] or fixed[i]:
                        continue
                    if constraints is not None and constraints.dependent[i]:
                        continue            # moves with its group's first member
                    if constraints is not None:
                        c = constraints.column(i)
                    else:
                        c = np.zeros(n)
                        c[i] = 1.0
                    add(c, lower[i], upper[i], scale[i], (bi, "theta", i))
        self.J = np.column_stack(cols) if cols else np.zeros((n, 0))
        self.lower, self.upper, self.scale = map(np.array, (self.lower, self.upper, self.scale))

    def of_block(self, bi) -> list:
        """Positions of block bi's working parameters."""
        return [k for k, o in enumerate(self.owner) if o[0] == bi]

    def position(self, model, theta, holds):
        """Current value of every working parameter."""
        out = np.zeros(len(self.owner))
        for k, (bi, kind, i) in enumerate(self.owner):
            if kind == "eta":
                out[k] = holds.reduced[bi].eta()[i]
            elif kind == "vech":
                b = model.blocks[bi]
                a, c = vech_pairs(b.structure.t)[i]
                out[k] = b.structure.matrix(theta[b.slice])[a, c]
            else:
                out[k] = theta[i]
        return out

    def block_step(self, model, bi, theta, delta):
        """The change of a natural PSD block's matrix under the working step."""
        b = model.blocks[bi]
        dG = np.zeros((b.structure.t, b.structure.t))
        pairs = vech_pairs(b.structure.t)
        for k in self.of_block(bi):
            a, c = pairs[self.owner[k][2]]
            dG[a, c] = dG[c, a] = delta[k]
        return dG

    def apply(self, model, theta, holds, delta):
        """theta and the held matrices after the working step delta (infinite if it is invalid)."""
        new = theta.copy()
        reduced = dict(holds.reduced)
        blocks = set()
        for k, (bi, kind, i) in enumerate(self.owner):
            if kind == "theta":
                new[i] += delta[k]
            else:
                blocks.add(bi)
        for bi in sorted(blocks):
            b = model.blocks[bi]
            if bi in reduced:
                ks = self.of_block(bi)
                reduced[bi] = reduced[bi].moved(delta[ks])
                G = reduced[bi].matrix()
            else:
                G = b.structure.matrix(theta[b.slice]) + self.block_step(model, bi, theta, delta)
                if np.any(np.diag(G) <= 0):
                    new[b.slice] = np.inf
                    continue
            new[b.slice] = theta_of_matrix(b.structure, G)
        if self.constraints is not None:
            new = self.constraints.project(new)
        return new, reduced


def labels(model) -> list:
    """Row labels of the variance-component table, one per parameter."""
    multi = len(model.design.traits) > 1
    return [lab for b in model.blocks for lab in b.structure.labels(b.label_name, multi)]


def kinds(model) -> list:
    """Kind of every parameter ("variance", "covariance", "correlation", "loading")."""
    return [k for b in model.blocks for k in b.structure.kinds()]


def box_bounds(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box bounds of every parameter and which of them are box-bounded parameters.

    Variances (>= 0) and correlations of terms that are not us / corgh matrices (those are
    kept positive semidefinite as a whole); the common correlation of corv / corh is bounded
    below by -1/(t-1), where its matrix becomes singular. Returns (lower, upper, bounded).
    """
    lower = np.concatenate([b.structure.lower_bounds() for b in model.blocks])
    upper = np.concatenate([b.structure.upper_bounds() for b in model.blocks])
    bounded = np.zeros(len(lower), bool)
    for b in model.blocks:
        if b.structure.name in ("corv", "corh"):
            lower[b.start] = -1.0 / (b.structure.t - 1)
        if not is_psd_block(b):
            sl = b.slice
            bounded[sl] = np.isfinite(lower[sl]) | np.isfinite(upper[sl])
    return lower, upper, bounded


def feasible(model, theta) -> bool:
    """Every term's parameters inside its structure's parameter space."""
    return all(b.structure.feasible(theta[b.slice]) for b in model.blocks if b.stop > b.start)


def vech_to_theta(structure) -> list:
    """Position in theta of each element of vech(G) (us: the same; corgh: r_ij or v_i)."""
    pairs = vech_pairs(structure.t)
    if structure.name == "us":
        return list(range(len(pairs)))
    nc = structure.n_params - structure.t
    cors = [(i, j) for i in range(structure.t) for j in range(i)]
    return [nc + i if i == j else cors.index((i, j)) for i, j in pairs]


def psd_room(G, dG) -> float:
    """Largest alpha with G + alpha dG positive semidefinite (G positive definite)."""
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        return 0.0
    Li = np.linalg.inv(L)
    m = np.linalg.eigvalsh(Li @ dG @ Li.T)[0]
    return np.inf if m >= 0 else -1.0 / m
