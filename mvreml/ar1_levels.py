"""AR1 structures as dimensions of a random term: ``ar1v(row):id(col)``, ``ar1(row):ar1(col)`` (a
correlated field trend), ``at(site):ar1v(row)``, ``us(trait):ar1(row)``.

The AR1 dimensions of a term go into its level matrix K, which then depends on parameters:

    Var(u) = K(rho) (x) G,    K = I_q0 (x) S_1 (x) S_2 (x) ...,

with q0 the levels of the term's plain factors (``id(col)``, ``col``; one level when there is
none), S_d = D_d^1/2 AR1(rho_d) D_d^1/2 over the positions of dimension d (D_d = I for ar1 /
ar1v, the per-position variances for ar1h) and G the matrix of the term's other dimensions
(the traits, us(site), ...; a variance for a univariate term). Everything stays sparse and
closed-form (the same facts as :mod:`mvreml.lattice`):

* K^-1 = I (x) S_1^-1 (x) ... has the Kronecker pattern of tridiagonals, fixed in theta:
  the mixed-model equations keep their pattern, only the values of the term's block change;
* log|K| = sum_d (q / n_d) [(n_d - 1) log(1 - rho_d^2) + sum_i log v_di];
* K V (the working variates of the AI matrix) is a product with small dense S_d per axis.

There is no dense compound block: however many positions, the AR1 part is in K. Positions are
the numeric values of the factor as in the residual lattice (integers from the smallest to the
largest, a gap being positions without records, not an adjacency; see
:func:`mvreml.lattice.lattice_positions`).

``ar1v`` carries the term's variance when no other dimension does (it is then the univariate
scale of G); ``ar1h`` carries per-position variances, its first held at 1 when another
dimension carries the scale, as in a direct product (:mod:`mvreml.structures.product`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import FormulaError
from .lattice import (RHO_START, ar1_inverse_derivative, ar1_inverse_entries, ar1_matrix, lattice_positions,
                      neighbour_pairs)
from .structures.base import Structure

#: AR1 structures of a random term's dimension
AR1_KINDS = ("ar1", "ar1v", "ar1h")


class Ar1Levels:
    """K(theta) = I_q0 (x) S_1 (x) ... on the levels of a random term, with K^-1 on a fixed pattern.

    Parameters
    ----------
    q0 : int
        Levels of the plain factors (slowest).
    dims : sequence of (column, kind, size, position labels)
        The AR1 dimensions in the order written, kind in :data:`AR1_KINDS`.
    """

    def __init__(self, q0: int, dims):
        self.q0 = int(q0)
        self.dims = [(str(c), str(k), int(n), tuple(lab)) for c, k, n, lab in dims]
        self.sizes = [self.q0] + [n for _, _, n, _ in self.dims]
        self.q = int(np.prod(self.sizes))
        grid = np.arange(self.q, dtype=np.int64).reshape(self.sizes)
        a, b = neighbour_pairs(grid, ["id"] + ["ar1"] * len(self.dims))
        order = np.lexsort((a, b))                  # CSC: by column b, rows a sorted
        self.rows, self.cols = a[order], b[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(self.cols, minlength=self.q))]).astype(np.int64)
        ia = np.array(np.unravel_index(self.rows, self.sizes))
        ib = np.array(np.unravel_index(self.cols, self.sizes))
        self._ij = [(ia[d + 1], ib[d + 1]) for d in range(len(self.dims))]
        self.n_params = sum(1 + (n if k == "ar1h" else 0) for _, k, n, _ in self.dims)

    # ----------------------------------------------------------------- parameters
    def _split(self, kp):
        """Per dimension: (rho, variances or None)."""
        kp = np.asarray(kp, float)
        out, i = [], 0
        for _, kind, n, _ in self.dims:
            rho = kp[i]
            i += 1
            v = None
            if kind == "ar1h":
                v = kp[i:i + n]
                i += n
            out.append((rho, v))
        return out

    def describe(self):
        """(kind, label suffix) per parameter."""
        out = []
        for col, kind, _, labels in self.dims:
            out.append(("correlation", f"!{col}!cor"))
            if kind == "ar1h":
                out += [("variance", f"!{col}_{lab}") for lab in labels]
        return out

    def feasible(self, kp) -> bool:
        return all(abs(rho) < 1 and (v is None or np.all(v > 0)) for rho, v in self._split(kp))

    # ----------------------------------------------------------------- K^-1 and log|K|
    def _factors(self, kp):
        """Per dimension, S_d^-1 at the pattern's entries."""
        out = []
        for (_, _, n, _), (i, j), (rho, v) in zip(self.dims, self._ij, self._split(kp)):
            f = ar1_inverse_entries(i, j, n, rho)
            if v is not None:
                f = f / np.sqrt(v[i] * v[j])
            out.append(f)
        return out

    def values(self, kp) -> np.ndarray:
        """K^-1 at the pattern's entries (CSC order)."""
        return np.prod(self._factors(kp), axis=0) if self.dims else np.ones(len(self.rows))

    def kinv(self, kp) -> sp.csc_matrix:
        return sp.csc_matrix((self.values(kp), self.rows.copy(), self.indptr.copy()), shape=(self.q, self.q))

    def derivatives(self, kp) -> np.ndarray:
        """d K^-1 / d kp_j at the pattern's entries: (n_params, nnz)."""
        parts = self._factors(kp)
        out = []
        for d, ((_, kind, n, _), (i, j), (rho, v)) in enumerate(zip(self.dims, self._ij, self._split(kp))):
            other = np.prod([p for e, p in enumerate(parts) if e != d], axis=0) if len(parts) > 1 else 1.0
            dr = ar1_inverse_derivative(i, j, n, rho)
            if v is not None:
                dr = dr / np.sqrt(v[i] * v[j])
            out.append(dr * other)
            if kind == "ar1h":
                # S^-1_ij / sqrt(v_i v_j): d / d v_k = -1/2 (delta_ik + delta_jk) / v_k times it
                full = parts[d] * other
                for k in range(n):
                    w = (i == k).astype(float) + (j == k)
                    out.append(-0.5 * w / v[k] * full)
        return np.array(out).reshape(self.n_params, len(self.rows))

    def logdet(self, kp) -> float:
        out = 0.0
        for (_, _, n, _), (rho, v) in zip(self.dims, self._split(kp)):
            m = self.q // n
            if n > 1:
                out += m * (n - 1) * np.log(1.0 - rho * rho)
            if v is not None:
                out += m * float(np.sum(np.log(v)))
        return float(out)

    def dlogdet(self, kp) -> np.ndarray:
        out = []
        for (_, kind, n, _), (rho, v) in zip(self.dims, self._split(kp)):
            m = self.q // n
            out.append(-m * (n - 1) * 2.0 * rho / (1.0 - rho * rho) if n > 1 else 0.0)
            if v is not None:
                out += list(m / v)
        return np.array(out)

    def apply(self, kp, U: np.ndarray) -> np.ndarray:
        """K U for U (q x t), level-major: one small dense product per AR1 axis."""
        t = U.shape[1]
        out = U.reshape(self.sizes + [t])
        for d, ((_, _, n, _), (rho, v)) in enumerate(zip(self.dims, self._split(kp))):
            S = ar1_matrix(n, rho)
            if v is not None:
                s = np.sqrt(v)
                S = s[:, None] * S * s[None, :]
            out = np.moveaxis(np.tensordot(S, out, axes=([1], [d + 1])), 0, d + 1)
        return out.reshape(self.q, t)

    def matrix(self, kp) -> np.ndarray:
        """K dense (tests and small problems only)."""
        out = np.eye(self.q0)
        for (_, _, n, _), (rho, v) in zip(self.dims, self._split(kp)):
            S = ar1_matrix(n, rho)
            if v is not None:
                s = np.sqrt(v)
                S = s[:, None] * S * s[None, :]
            out = np.kron(out, S)
        return out


class Ar1Term(Structure):
    """The parameters of a random term with AR1 dimensions: those of G (its other dimensions),
    then per AR1 dimension its correlation (and, ar1h, its per-position variances).

    ``matrix`` / ``derivatives`` are those of G (zero for the K parameters); the engine takes
    the K parameters through :attr:`levels_k` (:class:`Ar1Levels`).
    """

    name = "ar1term"

    def __init__(self, g: Structure, levels_k: Ar1Levels):
        self.g = g
        self.levels_k = levels_k
        self.n_g = g.n_params
        super().__init__(g.traits, None, dim=g.dim)
        fixed = list(g.fixed_params())
        scaled = _carries_scale(g)
        for _, kind, n, _ in levels_k.dims:
            fixed.append(False)
            if kind == "ar1h":
                fixed += [scaled] + [False] * (n - 1)
                scaled = True
        self._fixed = np.array(fixed, bool)

    def __str__(self) -> str:
        k = ":".join(f"{kind}({col})" for col, kind, _, _ in self.levels_k.dims)
        return f"{self.g}:{k}" if self.g.n_params else k

    def _describe(self):
        return [(kind, pair, sfx) for kind, pair, sfx in self.g._params] + \
               [(kind, None, sfx) for kind, sfx in self.levels_k.describe()]

    @property
    def k_slice(self) -> slice:
        return slice(self.n_g, self.n_params)

    def fixed_params(self) -> np.ndarray:
        return self._fixed.copy()

    def labels(self, term: str = "", multivariate: bool = True) -> list[str]:
        g = self.g.labels(term, multivariate) if self.n_g else []
        return g + [term + sfx if term else sfx.lstrip(":!") for _, sfx in self.levels_k.describe()]

    def matrix(self, theta):
        return self.g.matrix(self._theta(theta)[:self.n_g])

    def derivatives(self, theta):
        theta = self._theta(theta)
        D = np.zeros((self.n_params, self.t, self.t))
        if self.n_g:
            D[:self.n_g] = self.g.derivatives(theta[:self.n_g])
        return D

    def from_matrix(self, G):
        G = self._G(G)
        head = np.asarray(self.g.from_matrix(G), float) if self.n_g else np.zeros(0)
        scale = float(np.mean(np.diag(G))) if not _carries_scale(self.g) else 1.0
        tail = []
        for _, kind, n, _ in self.levels_k.dims:
            tail.append(RHO_START)
            if kind == "ar1h":
                tail += [scale] * n
        out = np.concatenate([head, tail])
        out[self._fixed] = 1.0
        return out

    def scales(self, vd, g_scales) -> list:
        """Typical magnitudes: G's (given), 1 for correlations, the variance for ar1h's."""
        big = float(np.mean(vd)) if not _carries_scale(self.g) else 1.0
        return list(g_scales) + [1.0 if kind == "correlation" else big for kind, _ in self.levels_k.describe()]

    def _feasible(self, theta):
        ok = self.g.feasible(theta[:self.n_g]) if self.n_g else True
        return bool(ok and self.levels_k.feasible(theta[self.n_g:]))


def _carries_scale(s: Structure) -> bool:
    return s.n_params > 0 and s.name != "id"


def position_labels(values: np.ndarray, pos: np.ndarray, size: int) -> tuple[str, ...]:
    """Labels of the positions 0..size-1 of a dimension: the factor's value there (a gap gets
    the integer it stands for)."""
    x = np.asarray(values, dtype=float)
    if np.all(x == np.round(x)):
        lo = int(x.min())
        return tuple(str(lo + i) for i in range(size))
    return tuple(f"{v:g}" for v in np.unique(x))


def ar1_term_levels(sub: pd.DataFrame, term, plain_labels, covered: np.ndarray, ar1_dims):
    """Levels of a random term with AR1 dimensions: (levels, level of every unit (-1: not
    covered), :class:`Ar1Levels`).

    Raises
    ------
    FormulaError
        The term also has a relationship matrix (vm / ide).
    DataError
        A position that is not a number (the message says how to give them).
    """
    if term.relmat is not None or term.ide:
        raise FormulaError(f"{term.label!r}: an AR1 dimension cannot be crossed with vm() / ide()",
                           term=term.label)
    idx = np.flatnonzero(covered)
    where = f" of random term {term.label!r}"
    if plain_labels is None:
        lv0, code0 = np.array(["1"], dtype=object), np.zeros(len(idx), np.int64)
    else:
        lv0, code0 = np.unique(plain_labels[idx].astype(str), return_inverse=True)
    dims, codes = [], []
    for d in ar1_dims:
        vals = sub[d.column].to_numpy()[idx]
        pos, size = lattice_positions(vals, d.column, where)
        dims.append((d.column, d.structure, size, position_labels(vals, pos, size)))
        codes.append(pos)
    K = Ar1Levels(len(lv0), dims)
    flat = np.ravel_multi_index(tuple([code0] + codes), K.sizes).astype(np.int64)
    level_of_unit = np.full(len(sub), -1, np.int64)
    level_of_unit[idx] = flat
    grids = np.meshgrid(*([np.asarray(lv0, str)] + [np.array(lab) for _, _, _, lab in dims]), indexing="ij")
    levels = np.array([":".join(p) for p in zip(*(g.reshape(-1) for g in grids))], dtype=object)
    if plain_labels is None:
        levels = np.array([s.split(":", 1)[1] for s in levels], dtype=object)
    return levels, level_of_unit, K


def _k_derivatives(b, rd, theta_b, dk=None):
    """The K parameters of an AR1 term: their values, and (column of theta, dK^-1 as a q x q
    sparse matrix) for each, from ``dk`` (the dK^-1 values) or computed."""
    st = b.structure
    kp = np.asarray(theta_b, float)[st.k_slice]
    dk = rd.kcor.derivatives(kp) if dk is None else dk
    first = b.start + st.n_g
    mats = [(first + j, sp.csc_matrix((dk[j], rd.kcor.rows, rd.kcor.indptr), shape=(rd.q, rd.q)))
            for j in range(st.n_params - st.n_g)]
    return kp, dk, mats


def ar1_term_variates(b, rd, theta_b, U, Z, F) -> list:
    """Working variates of the K parameters of an AR1 term into F; returns the dK^-1 values.

    f_j = Z dK K^-1 u = -Z vec(K dK^-1 U). They need only the solution, so the engine forms them
    before the selected inverse overwrites the factor (mvreml.chol); the score follows in
    `ar1_term_score`.
    """
    kp, dk, mats = _k_derivatives(b, rd, theta_b)
    for col, dK in mats:
        F[:, col] = Z @ (-rd.kcor.apply(kp, dK @ U)).ravel()
    return dk


def ar1_term_score(pat, b, rd, theta_b, U, Gi, cinv, dk, score) -> None:
    """Score of the K parameters of an AR1 term (in place), ``dk`` from `ar1_term_variates`.

    With Var(u) = K (x) G and E = u u' + C^uu: dlogL/dk_j = -1/2 [t dlog|K|/dk_j + tr(dK^-1
    (x) G^-1 E)], the trace sum_ab dK^-1_ab <G^-1, E_ab> (the adjoint map of C's assembly with
    dK^-1's values).
    """
    kp, dk, mats = _k_derivatives(b, rd, theta_b, dk)
    tr1 = rd.kcor.dlogdet(kp)
    for j, (col, dK) in enumerate(mats):
        Sd = U.T @ (dK @ U) + pat.term_trace(b.k, cinv, dk[j])
        score[col] = -0.5 * (rd.t * tr1[j] + float(np.sum(Gi * Sd)))


def hold_orphan_correlations(run, theta) -> bool:
    """Hold the correlations of an AR1 term whose variances are all held at zero (log L is flat
    in them there: the iteration would wander), and release them once a variance is free again.
    ``run`` is the step control (mvreml._steps); returns True when a hold changed."""
    holds, changed = run.holds, False
    for b in run.model.blocks:
        st = b.structure
        if st.name != "ar1term":
            continue
        kinds, fixed = st.kinds(), st.fixed_params()
        var = [b.start + j for j, k in enumerate(kinds) if k == "variance" and not fixed[j]]
        cors = [b.start + j for j in range(st.n_g, st.n_params) if kinds[j] == "correlation"]
        zero = bool(var) and all(holds.box[i] and holds.side[i] < 0 for i in var)
        for i in cors:
            key = ("ar1", i)
            if zero and not holds.ident[i]:
                holds.ident[i] = True
                holds.texts[key] = (f"{run.labels[i]} held at {theta[i]:.4g}: the variance of {b.name} is at "
                                    "zero, so its correlation is not identified")
                changed = True
            elif not zero and key in holds.texts:
                holds.ident[i] = False
                del holds.texts[key]
                changed = True
    return changed
