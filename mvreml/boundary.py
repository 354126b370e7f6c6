"""Trait matrices on the boundary of the positive semidefinite cone, held at reduced rank.

A us / corgh matrix G whose REML estimate is singular (a trait without genetic variance,
a correlation of +-1, a whole term at zero) cannot be reached by Newton steps on its
elements: every step towards the boundary is cut short, and the other parameters stall
with it. When the iteration finds such a matrix it holds it *on* the boundary at rank r and
moves on a reduced-rank scale (cf. WOMBAT's reduced-rank and Cholesky parameterisations):

    G = D (P' L L' P + eps I) D

with D = diag(typical standard deviation of each trait), P a pivoting permutation and L a
t x r lower-trapezoidal factor with a positive diagonal (pivoted Cholesky). ``eps`` keeps G
invertible for the mixed-model equations; it changes log L by O(eps). The free entries of L
are the working parameters; score and AI matrix reach them through the chain rule
(docs/THEORY.md, "Parameterisations and steps"). Re-factoring P' L L' P after every step keeps the
parameterisation canonical. Whether a held direction must come back is decided from the
matrix gradient dlogL/dG projected on the null space of L L' (a KKT check).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .structures import jacobian_elements, vech_pairs

#: structures whose parameter space is the whole positive definite cone
PSD_STRUCTURES = ("us", "corgh")
#: eigenvalue floor of a held matrix, relative to the trait scales (the "eps" above), while
#: iterating: the score on the factor scale loses about (1e-16 / eps^2) of its accuracy,
#: so eps cannot be tiny while derivatives are needed ...
FLOOR = 1e-6
#: ... and once they are not (the reported fit): log L is then within ~1e-9 x |dlogL/deps|
#: of its value on the boundary itself
FLOOR_FINAL = 1e-9


def is_psd_block(block) -> bool:
    """A us / corgh term on two traits or more (one trait: a plain box-bounded variance)."""
    return block.structure.name in PSD_STRUCTURES and block.structure.t >= 2


def trait_scales(block, scale: np.ndarray) -> np.ndarray:
    """Typical standard deviation of each trait of a block, from the per-parameter scales."""
    st = block.structure
    d = np.ones(st.t)
    for pair, s in zip(st.trait_pairs(), scale[block.slice]):
        if pair is not None and pair[0] == pair[1] and s > 0:
            d[pair[0]] = np.sqrt(s)
    return d


def theta_of_matrix(structure, G: np.ndarray) -> np.ndarray:
    """Exact parameters of a positive definite G (us: its elements; corgh: r_ij then v_i)."""
    G = 0.5 * (G + G.T)
    if structure.name == "us":
        return np.array([G[i, j] for i, j in vech_pairs(structure.t)])
    v = np.diag(G).copy()
    sd = np.sqrt(v)
    cors = [G[i, j] / (sd[i] * sd[j]) for i in range(structure.t) for j in range(i)]
    return np.concatenate([cors, v])


def theta_jacobian(structure, theta: np.ndarray) -> np.ndarray:
    """d theta / d vech(G) (square), the inverse of the structure's element Jacobian."""
    J = np.asarray(jacobian_elements(structure, theta), float)
    if structure.name == "us":
        return np.eye(J.shape[0])
    try:
        return np.linalg.inv(J)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(J)


def matrix_gradient(structure, theta: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Symmetric Gbar with dlogL = sum_rs Gbar_rs dG_rs, from the score on theta."""
    Jinv = theta_jacobian(structure, theta)
    g = Jinv.T @ score                    # gradient on vech(G), one entry per (i, j <= i)
    t = structure.t
    Gb = np.zeros((t, t))
    for k, (i, j) in enumerate(vech_pairs(t)):
        if i == j:
            Gb[i, i] = g[k]
        else:
            Gb[i, j] = Gb[j, i] = 0.5 * g[k]
    return Gb


def pivoted_cholesky(S: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """S[perm][:, perm] ~ L L', L (t x r) lower trapezoidal, pivots by largest remaining diagonal.

    Exact for a positive semidefinite S of rank <= r. Ties go to the lower index, so the
    factor is a deterministic function of S.
    """
    t = S.shape[0]
    A = 0.5 * (S + S.T)
    perm = np.arange(t)
    L = np.zeros((t, r))
    for m in range(r):
        rest = np.diag(A)[perm[m:]] - np.sum(L[m:, :m] ** 2, axis=1)
        p = m + int(np.argmax(rest))
        perm[[m, p]] = perm[[p, m]]
        L[[m, p], :m] = L[[p, m], :m]
        piv = max(rest[p - m], 0.0)
        if piv <= 0.0:
            break
        L[m, m] = np.sqrt(piv)
        col = A[perm[m + 1:], perm[m]] - L[m + 1:, :m] @ L[m, :m]
        L[m + 1:, m] = col / L[m, m]
    return perm, L


@dataclass
class Reduced:
    """A trait matrix held at rank r on the boundary: G = D (P' L L' P + floor I) D.

    Attributes
    ----------
    d : ndarray (t,)
        Trait scales (D = diag(d)).
    perm : ndarray (t,)
        Pivot order: row m of L belongs to trait perm[m].
    L : ndarray (t, r)
        Lower-trapezoidal factor on the scaled matrix, positive diagonal.
    """

    d: np.ndarray
    perm: np.ndarray
    L: np.ndarray
    floor: float = FLOOR

    @property
    def r(self) -> int:
        return self.L.shape[1]

    @property
    def t(self) -> int:
        return self.L.shape[0]

    @classmethod
    def from_scaled(cls, H: np.ndarray, r: int, d: np.ndarray) -> "Reduced":
        """The rank-r part of a scaled PSD matrix H (its r leading eigen-directions)."""
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        r = int(min(r, np.sum(w > 0)))
        keep = slice(len(w) - r, len(w))
        Hr = (V[:, keep] * w[keep]) @ V[:, keep].T
        perm, L = pivoted_cholesky(Hr, r)
        return cls(d=np.asarray(d, float), perm=perm, L=L)

    @classmethod
    def from_matrix(cls, G: np.ndarray, r: int, d: np.ndarray) -> "Reduced":
        return cls.from_scaled(G / np.outer(d, d), r, d)

    def scaled(self) -> np.ndarray:
        """P' L L' P: the held matrix on the scale of D, without the floor."""
        H = np.zeros((self.t, self.t))
        H[np.ix_(self.perm, self.perm)] = self.L @ self.L.T
        return H

    def matrix(self) -> np.ndarray:
        H = self.scaled() + self.floor * np.eye(self.t)
        return H * np.outer(self.d, self.d)

    def _index(self):
        return [(i, m) for m in range(self.r) for i in range(m, self.t)]

    def eta(self) -> np.ndarray:
        """Working parameters: the free entries of L, column by column."""
        return np.array([self.L[i, m] for i, m in self._index()])

    def pivot_positions(self) -> np.ndarray:
        """Positions in eta of the diagonal of L (kept >= 0: a pivot at 0 means a lower rank)."""
        return np.array([k for k, (i, m) in enumerate(self._index()) if i == m], dtype=int)

    def moved(self, delta: np.ndarray) -> "Reduced":
        """The canonical held matrix after eta += delta."""
        L = self.L.copy()
        for k, (i, m) in enumerate(self._index()):
            L[i, m] += delta[k]
        H = np.zeros((self.t, self.t))
        H[np.ix_(self.perm, self.perm)] = L @ L.T
        perm, Lc = pivoted_cholesky(H, self.r)
        return Reduced(d=self.d, perm=perm, L=Lc, floor=self.floor)

    def dvech(self) -> np.ndarray:
        """d vech(G) / d eta, shape (t(t+1)/2, n_eta)."""
        pairs = vech_pairs(self.t)
        out = np.zeros((len(pairs), len(self._index())))
        inv = np.empty(self.t, dtype=int)
        inv[self.perm] = np.arange(self.t)
        for k, (i, m) in enumerate(self._index()):
            lm = self.L[:, m]
            for p, (a, b) in enumerate(pairs):
                pa, pb = inv[a], inv[b]
                dS = (pa == i) * lm[pb] + (pb == i) * lm[pa]
                out[p, k] = dS * self.d[a] * self.d[b]
        return out

    def curvature(self, Gbar: np.ndarray) -> np.ndarray:
        """Information the AI matrix misses on the factor scale, from the transform's curvature.

        log L(G(eta)) has Hessian J' H_G J + sum_rs Gbar_rs d2G_rs/deta deta' and the second
        term, 2 delta_mn (P D Gbar D P')_ij for eta = (L_im, L_jn), does not vanish on the
        boundary, where the gradient Gbar (dlogL = sum Gbar_rs dG_rs) has a negative part
        pushing outward. Without it the AI step on L overshoots. Only the negative part of
        Gbar is used, so the returned matrix (to be added to the AI matrix) is positive
        semidefinite. Shape (n_eta, n_eta).
        """
        Gs = (Gbar * np.outer(self.d, self.d))[np.ix_(self.perm, self.perm)]
        w, V = np.linalg.eigh(0.5 * (Gs + Gs.T))
        neg = (V * np.minimum(w, 0.0)) @ V.T
        idx = self._index()
        out = np.zeros((len(idx), len(idx)))
        for a, (i, m) in enumerate(idx):
            for b, (j, n) in enumerate(idx):
                if m == n:
                    out[a, b] = -2.0 * neg[i, j]
        return out

    def null_space(self) -> np.ndarray:
        """Orthonormal basis (scaled coordinates) of the directions held at the floor."""
        H = self.scaled()
        w, V = np.linalg.eigh(H)
        return V[:, : self.t - self.r]

    def eigenvalues(self) -> np.ndarray:
        """The r non-zero eigenvalues of the scaled held matrix, ascending."""
        return np.linalg.eigvalsh(self.L.T @ self.L)


def describe_reduced(block, R: Reduced) -> str:
    """Plain words for a matrix held singular: which traits / combination lack variance."""
    traits = block.structure.traits
    name = block.name
    N = R.null_space()
    parts = []
    for k in range(N.shape[1]):
        n = N[:, k]
        big = np.flatnonzero(np.abs(n) > 1e-3 * np.max(np.abs(n)))
        big = big[np.argsort(-np.abs(n[big]), kind="stable")]
        c = n / R.d                            # c'u has no variance (data scale)
        if len(big) == 1:
            parts.append(f"trait {traits[big[0]]} has no {name} variance")
        elif len(big) == 2:
            a, b = big
            sign = "+1" if c[a] * c[b] < 0 else "-1"
            parts.append(f"the {name} correlation of {traits[a]} and {traits[b]} is {sign}")
        else:
            x = big[0]
            comb = " ".join(f"{'-' if c[j] / c[x] > 0 else '+'} {abs(c[j] / c[x]):.3g} {traits[j]}" for j in big[1:])
            parts.append(f"the {name} effects of {traits[x]} are an exact linear combination of those of "
                         f"{', '.join(traits[j] for j in big[1:])} ({traits[x]} = {comb.lstrip('+ ')})")
    rank = "zero" if R.r == 0 else f"rank {R.r} of {R.t}"
    return (f"the {name} covariance matrix is singular ({rank}; {'; '.join(parts)}): held on the boundary, "
            f"all its components reported with bound 'B'")
