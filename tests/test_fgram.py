"""B' C^-1 B by forward solves on the reached supernodes (mvreml._core.fgram, through
SupernodalFactor.inverse_gram) and the AI matrix from split variates (mvreml.fa_ai), each
against a dense numpy computation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mvreml._core import fgram
from mvreml.chol import SupernodalFactor
from mvreml.fa_ai import SplitVariates


def _spd(n, density, rng, blocks=1):
    """Sparse SPD C: `blocks` independent diagonal blocks joined by a few shared last rows
    (so that columns of B nonzero in one block reach only that block's subtree)."""
    size = n // blocks
    parts = [sp.random(size, size, density, random_state=rng) for _ in range(blocks)]
    A = sp.block_diag(parts, format="csr")
    A = sp.vstack([A, sp.random(5, A.shape[1], 0.2, random_state=rng)])
    A = sp.hstack([A, sp.random(A.shape[0], 5, 0.5, random_state=rng)])
    C = (A @ A.T + 3.0 * sp.eye(A.shape[0])).tocsc()
    return C


def _factor(C):
    f = SupernodalFactor(sp.tril(C, format="csc"))
    f.factorize(sp.tril(C, format="csc"))
    return f


@pytest.mark.parametrize("n, density, m, blocks", [(40, 0.3, 3, 1), (400, 0.01, 9, 4), (1500, 0.003, 30, 10)])
def test_inverse_gram_matches_dense(n, density, m, blocks):
    rng = np.random.default_rng(n)
    C = _spd(n, density, rng, blocks)
    f = _factor(C)
    N = C.shape[0]
    # columns nonzero on one block (and some on the shared rows), one empty, one dense
    cols = []
    size = n // blocks
    for j in range(m):
        b = np.zeros(N)
        if j == 1:
            cols.append(b)
            continue
        if j == 2:
            cols.append(rng.normal(size=N))
            continue
        blk = j % blocks
        rows = rng.choice(np.arange(blk * size, (blk + 1) * size), size=min(5, size), replace=False)
        b[rows] = rng.normal(size=rows.size)
        if j % 3 == 0:
            b[-3:] = rng.normal(size=3)
        cols.append(b)
    B = np.column_stack(cols)
    G = f.inverse_gram(sp.csc_matrix(B))
    ref = B.T @ np.linalg.solve(C.toarray(), B)
    np.testing.assert_allclose(G, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    # the factor is still usable (the kernel works on a copy of B only)
    np.testing.assert_allclose(f(B[:, 0]), np.linalg.solve(C.toarray(), B[:, 0]), rtol=1e-10, atol=1e-12)


def test_column_ranges_are_closed_upward():
    rng = np.random.default_rng(7)
    C = _spd(600, 0.005, rng, 6)
    f = _factor(C)
    B = sp.random(C.shape[0], 12, 0.01, random_state=rng, format="csc")
    sup, pi, px, s = f._f.supernodes()
    ns = sup.shape[0] - 1
    lo, hi = np.empty(ns, np.int64), np.empty(ns, np.int64)
    fgram.column_ranges(sup, pi, s, f.pinv, B.indptr.astype(np.int64), B.indices.astype(np.int64), lo, hi)
    col_super = np.repeat(np.arange(ns), np.diff(sup))
    for r, c in zip(*B.nonzero()):            # every nonzero's supernode holds its column
        j = col_super[f.pinv[r]]
        assert lo[j] <= c < hi[j]
    for j in range(ns):                       # a parent's range holds its child's
        w = sup[j + 1] - sup[j]
        if pi[j + 1] - pi[j] > w and hi[j] > lo[j]:
            par = col_super[s[pi[j] + w]]
            assert lo[par] <= lo[j] and hi[par] >= hi[j]


def test_kernel_checks_its_inputs():
    rng = np.random.default_rng(3)
    C = _spd(60, 0.1, rng)
    f = _factor(C)
    sup, pi, px, s = f._f.supernodes()
    ns = sup.shape[0] - 1
    x = f._f.values()
    Y = np.zeros((f.n, 2), order="F")
    G = np.zeros((2, 2), order="F")
    lo, hi = np.zeros(ns, np.int64), np.full(ns, 3, np.int64)
    with pytest.raises(ValueError, match="outside 0..2"):
        fgram.forward_gram(sup, pi, px, s, x, Y, lo, hi, G)
    with pytest.raises(ValueError, match="rows for a factor"):
        fgram.forward_gram(sup, pi, px, s, x, np.zeros((f.n - 1, 2), order="F"), lo, np.full(ns, 2, np.int64), G)
    with pytest.raises(ValueError, match="row 999"):
        fgram.column_ranges(sup, pi, s, f.pinv, np.array([0, 1], np.int64), np.array([999], np.int64),
                            np.empty(ns, np.int64), np.empty(ns, np.int64))
    with pytest.raises(ValueError, match="for a"):
        f.inverse_gram(sp.csc_matrix((f.n + 1, 2)))


@pytest.mark.parametrize("diagonal", [True, False])
def test_split_variates_ai_is_the_dense_formula(diagonal):
    """1/2 F'PF with F = W X + A, P = R^-1 - R^-1 W C^-1 W'R^-1, C = W'R^-1W + D."""
    rng = np.random.default_rng(11 + diagonal)
    N, p, q, m = 60, 3, 20, 6
    X0 = sp.csr_matrix(np.column_stack([np.ones(N), rng.normal(size=(N, p - 1))]))
    Z = sp.csr_matrix((np.ones(N), (np.arange(N), rng.integers(0, q, N))), shape=(N, q))
    W = sp.hstack([X0, Z], format="csr")
    if diagonal:
        rdiag = rng.uniform(0.5, 2.0, N)
        Rinv = sp.diags(rdiag).tocsr()
    else:               # pairs of records share a unit: 2 x 2 blocks of R^-1
        rdiag = None
        blk = [np.linalg.inv(np.array([[1.0, r], [r, 1.0]])) for r in rng.uniform(-0.6, 0.6, N // 2)]
        Rinv = sp.block_diag(blk, format="csr")
    K = sp.random(q, q, 0.1, random_state=rng)
    Kinv = (K @ K.T + sp.eye(q)).toarray()
    D = np.zeros((p + q, p + q))
    D[p:, p:] = Kinv / 0.7
    C = (W.T @ Rinv @ W).toarray() + D
    v = SplitVariates(p + q, N, m)
    F = np.zeros((N, m))
    for j in range(m):
        if j % 3 != 2:            # an equation part on the random effects
            x = np.zeros(p + q)
            x[p:] = rng.normal(size=q)
            v.equations(j, np.arange(p, p + q), x[p:], (D @ x)[p:])
            F[:, j] += W @ x
        if j % 3 != 0:            # a record part on some records
            a = np.zeros(N)
            rows = rng.choice(N, 15, replace=False)
            a[rows] = rng.normal(size=15)
            if j == 4:
                v.dense_column(j, a)
            else:
                v.records(j, rows, a[rows])
            F[:, j] += a
    Rd = Rinv.toarray()
    Wd = W.toarray()
    Pm = Rd - Rd @ Wd @ np.linalg.solve(C, Wd.T @ Rd)
    ref = 0.5 * F.T @ Pm @ F
    f = _factor(sp.csc_matrix(C))
    ai = v.ai(W, Rinv, f, rdiag=rdiag)
    np.testing.assert_allclose(ai, ref, rtol=1e-9, atol=1e-11 * np.abs(ref).max())
