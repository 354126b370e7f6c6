"""Independent dense REML *optimisation* for small problems (the reference the fits must reach).

Every trait matrix is written through a Cholesky-type factor, so any value of the parameters
is a positive semidefinite matrix and the boundary (a zero variance, a singular matrix) is
an ordinary interior point of the search: us / corgh / fa matrices as G = L L' (L lower
triangular), diag as diag(a^2), idv as a^2 I. log L is the dense formula of ``dense.py``
(V = Z G Z' + R built explicitly); its gradient is exact (matrix gradient dlogL/dG chained
through the factor). Nothing of mvreml's likelihood, MME or iteration is used.
"""
from __future__ import annotations

import contextlib
import ctypes
import re

import numpy as np
from scipy.optimize import minimize

from dense import dense_parts, dense_V

_BAD = 1e300


def _openblas_libraries() -> list:
    """The OpenBLAS libraries loaded in this process (numpy's, scipy's)."""
    paths = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                m = re.search(r"(/\S*openblas\S*\.so\S*)", line)
                if m:
                    paths.add(m.group(1))
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    out.append((get, put))
                    break
            else:
                continue
            break
    return out


@contextlib.contextmanager
def single_thread_blas():
    """Run dense linear algebra on one BLAS thread: on a machine shared by several jobs,
    threaded OpenBLAS on 300 x 300 matrices is tens of times slower than one thread."""
    libs = _openblas_libraries()
    before = [get() for get, _ in libs]
    for _, put in libs:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(libs, before):
            put(n)


class DenseREML:
    """Dense log L of a model over Cholesky-type factors of its trait matrices.

    Parameters
    ----------
    design : mvreml.design.Design
    blocks : list of ParamBlock
        Only ``structure.name`` and ``structure.t`` are used.
    """

    def __init__(self, design, blocks):
        self.design = design
        self.parts = dense_parts(design)
        self.kinds = [_kind(b.structure.name) for b in blocks]
        self.ts = [b.structure.t for b in blocks]
        self.sizes = [_size(k, t) for k, t in zip(self.kinds, self.ts)]
        self.n = int(sum(self.sizes))
        d = design
        self.unit_obs = [(d.unit_start[i], d.unit_start[i + 1]) for i in range(d.n_units)]

    # ------------------------------------------------------------ factor <-> matrices
    def matrices(self, x):
        mats, pos = [], 0
        for kind, t, m in zip(self.kinds, self.ts, self.sizes):
            mats.append(_matrix(kind, t, x[pos:pos + m]))
            pos += m
        return mats

    def factors(self, mats):
        """x whose matrices are (the PSD parts of) mats."""
        out = []
        for kind, t, G in zip(self.kinds, self.ts, mats):
            G = 0.5 * (G + G.T)
            if kind == "idv":
                out.append([np.sqrt(max(np.mean(np.diag(G)), 0.0))])
            elif kind == "diag":
                out.append(np.sqrt(np.clip(np.diag(G), 0, None)))
            else:
                w, V = np.linalg.eigh(G)
                Gp = (V * np.clip(w, 0, None)) @ V.T + 1e-12 * max(np.trace(G), 1e-300) * np.eye(t)
                L = np.linalg.cholesky(Gp)
                out.append(L[np.tril_indices(t)])
        return np.concatenate(out)

    # ------------------------------------------------------------ objective
    def loglik_grad(self, x):
        """log L and its gradient on the factor scale x."""
        ll, gbars = self.matrix_gradients(self.matrices(x))
        if gbars is None:
            return ll, np.zeros_like(x)
        grad, pos = [], 0
        for kind, t, m, Gb in zip(self.kinds, self.ts, self.sizes, gbars):
            grad.append(_chain(kind, t, x[pos:pos + m], Gb))
            pos += m
        return ll, np.concatenate(grad)

    def matrix_gradients(self, mats):
        """log L and, per term, the symmetric Gbar with dlogL = sum_rs Gbar_rs dG_rs."""
        d = self.design
        X, Zs, Ks = self.parts
        V = dense_V(d, mats, self.parts)
        try:
            Lv = np.linalg.cholesky(V)
        except np.linalg.LinAlgError:
            return -_BAD, None
        Vi = np.linalg.inv(V)
        XtViX = X.T @ Vi @ X
        try:
            Lx = np.linalg.cholesky(XtViX)
        except np.linalg.LinAlgError:
            return -_BAD, None
        P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
        y = d.y
        Py = P @ y
        N, p = X.shape
        ll = -0.5 * ((N - p) * np.log(2 * np.pi) + 2 * np.log(np.diag(Lv)).sum()
                     + 2 * np.log(np.diag(Lx)).sum() + y @ Py)
        A = P - np.outer(Py, Py)           # dlogL/dV = -1/2 A
        gbars = []
        for Z, K, t in zip(Zs, Ks, self.ts[:-1]):
            q = K.shape[0]
            M = (Z.T @ A @ Z).reshape(q, t, q, t)
            gbars.append(-0.5 * np.einsum("ab,arbs->rs", K, M))
        t = self.ts[-1]
        GR = np.zeros((t, t))
        for i, (a, b) in enumerate(self.unit_obs):
            tr = d.obs_trait[a:b]
            GR[np.ix_(tr, tr)] += A[a:b, a:b] / d.weights[i]
        gbars.append(-0.5 * GR)
        return ll, [0.5 * (G + G.T) for G in gbars]

    def maximise(self, starts, gtol=1e-6, maxiter=3000):
        """Best (log L, matrices) over BFGS runs from each start (a list of matrix lists)."""
        with single_thread_blas():
            return self._maximise(starts, gtol, maxiter)

    def _maximise(self, starts, gtol, maxiter):
        best = (-np.inf, None)

        def f(x):
            ll, g = self.loglik_grad(x)
            return -ll, -g

        for mats in starts:
            x0 = self.factors(mats)
            r = minimize(f, x0, jac=True, method="BFGS", options=dict(gtol=gtol, maxiter=maxiter))
            # polish: L-BFGS from the BFGS point (cheap, helps on flat boundary directions)
            r2 = minimize(f, r.x, jac=True, method="L-BFGS-B",
                          options=dict(ftol=1e-15, gtol=1e-11, maxiter=maxiter))
            x = r2.x if r2.fun <= r.fun else r.x
            ll = -min(r.fun, r2.fun)
            if ll > best[0]:
                best = (ll, self.matrices(x))
        return best


def _kind(name: str) -> str:
    """The factor form of a structure; corgh spans the same matrices as us (the PD cone)."""
    kinds = {"idv": "idv", "diag": "diag", "us": "chol", "corgh": "chol"}
    if name not in kinds:
        raise ValueError(f"no dense Cholesky form for {name}(trait)")
    return kinds[name]


def _size(kind: str, t: int) -> int:
    return {"idv": 1, "diag": t}.get(kind, t * (t + 1) // 2)


def _matrix(kind, t, x):
    if kind == "idv":
        return x[0] ** 2 * np.eye(t)
    if kind == "diag":
        return np.diag(x ** 2)
    L = np.zeros((t, t))
    L[np.tril_indices(t)] = x
    return L @ L.T


def _chain(kind, t, x, Gb):
    """d logL / d x from the symmetric matrix gradient Gb (dlogL = sum_rs Gb_rs dG_rs)."""
    Gb = 0.5 * (Gb + Gb.T)
    if kind == "idv":
        return np.array([2 * x[0] * np.trace(Gb)])
    if kind == "diag":
        return 2 * x * np.diag(Gb)
    L = np.zeros((t, t))
    L[np.tril_indices(t)] = x
    return (2 * Gb @ L)[np.tril_indices(t)]
