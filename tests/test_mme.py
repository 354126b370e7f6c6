"""The compiled MME pattern and maps (mvreml._core.mme via mvreml.mme) against dense numpy.

On small random designs (missing traits, weights, a term with a sparse K^-1, a common
covariate) the pattern of C must equal the nonzero structure of |W|'B|W| + blockdiag(|K^-1|
(x) 1 1'), assembly must equal the dense W'R^-1W + K^-1 (x) G^-1, and the adjoints the dense
traces; the int64 kernels must give what the int32 ones give.
"""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mvreml._core import mme as _k
from mvreml.design import build_design
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.mme import MMEPattern
from mvreml.relmat import RelationshipMatrix


def _sparse_spd(rng, q, density=0.15):
    """A sparse SPD matrix with some zero off-diagonals (a stand-in for A^-1)."""
    A = sp.random(q, q, density=density, random_state=rng).toarray()
    A = A + A.T
    return A + np.diag(np.abs(A).sum(axis=1) + 1.0)


def _design(seed, traits, missing, fixed, random, residual, weights=False, n=45):
    rng = np.random.default_rng(seed)
    q = 12
    labels = [f"a{i}" for i in range(q)]
    df = pd.DataFrame({
        "animal": rng.choice(labels, n),
        "B": rng.integers(0, 4, n).astype(str),
        "sex": rng.choice(["m", "f"], n),
        "x": rng.standard_normal(n),
    })
    for j, tr in enumerate(traits):
        y = rng.standard_normal(n) + j
        if missing and j:
            y[rng.random(n) < missing] = np.nan
        df[tr] = y
    if weights:
        df["w"] = rng.uniform(0.5, 2.0, n)
    kinv = _sparse_spd(rng, q)
    rel = RelationshipMatrix.from_inverse(pd.DataFrame(kinv, index=labels, columns=labels), name="K")
    fs = parse_fixed(fixed)
    rs = parse_random(random, fs.response)
    res = parse_residual(residual, fs.response)
    return build_design(df, fs, rs, res, relmat={"K": rel}, weights="w" if weights else None)


CASES = [
    (0, ("y1",), 0.0, "y1 ~ 1 + sex + x", "~ vm(animal, K) + B", None, False),
    (1, ("y1", "y2"), 0.2, "cbind(y1, y2) ~ trait + at(trait):sex", "~ us(trait):vm(animal, K) + diag(trait):B",
     "~ units:us(trait)", True),
    (2, ("y1", "y2", "y3"), 0.3, "cbind(y1, y2, y3) ~ trait + x", "~ us(trait):vm(animal, K) + at(trait, y2):B",
     "~ units:us(trait)", False),
]


def _dense_parts(pat, design, rng):
    """Dense W, a random symmetric block-diagonal R^-1 (and its pair values), random G^-1."""
    W = pat.W.toarray()
    N = design.n_obs
    B = np.zeros((N, N))
    for u in range(design.n_units):
        s, e = design.unit_start[u], design.unit_start[u + 1]
        M = rng.standard_normal((e - s, e - s))
        B[s:e, s:e] = M + M.T
    rinv_pairs = B[pat.pair_a, pat.pair_b]
    ginvs = []
    for rd in design.random:
        M = rng.standard_normal((rd.t, rd.t))
        ginvs.append(M + M.T)
    return W, B, rinv_pairs, ginvs


@pytest.mark.parametrize("case", range(len(CASES)))
def test_pattern_assembly_and_adjoints_match_dense(case):
    seed, traits, missing, fixed, random, residual, weights = CASES[case]
    design = _design(seed, traits, missing, fixed, random, residual, weights)
    pat = MMEPattern(design)
    rng = np.random.default_rng(100 + case)
    W, B, rinv_pairs, ginvs = _dense_parts(pat, design, rng)
    P = pat.n_eq

    # pattern: unit cliques of |W| plus |K^-1| (x) 1 1' per term, lower triangle
    units = np.zeros_like(B, dtype=bool)
    for u in range(design.n_units):
        s, e = design.unit_start[u], design.unit_start[u + 1]
        units[s:e, s:e] = True
    Wb = (W != 0).astype(float)
    struct = (Wb.T @ units.astype(float) @ Wb) > 0
    Cd = W.T @ B @ W
    for rd, off, Gi in zip(design.random, pat.offsets, ginvs):
        K = rd.kinv.toarray()
        n = rd.q * rd.t
        struct[off:off + n, off:off + n] |= np.kron(K != 0, np.ones((rd.t, rd.t), bool))
        Cd[off:off + n, off:off + n] += np.kron(K, Gi)
    got = sp.csc_matrix((np.ones(pat.nnz), pat.indices, pat.indptr), shape=(P, P)).toarray() > 0
    np.testing.assert_array_equal(got, np.tril(struct))
    assert pat.indices.dtype == np.int32 and pat.indptr.dtype == np.int32
    for j in range(P):   # sorted rows, diagonal first
        col = pat.indices[pat.indptr[j]:pat.indptr[j + 1]]
        assert col[0] == j and np.all(np.diff(col) > 0)
    np.testing.assert_array_equal(pat.rows, pat.indices)
    np.testing.assert_array_equal(pat.diagonal(np.arange(pat.nnz)), pat.indptr[:-1])
    np.testing.assert_array_equal(pat.cols, np.repeat(np.arange(P), np.diff(pat.indptr)))

    # assembly: C = W'R^-1W + K^-1 (x) G^-1 on the lower pattern
    C = pat.assemble(rinv_pairs, ginvs).toarray()
    scale = np.abs(Cd).max()
    np.testing.assert_allclose(C, np.tril(Cd), rtol=0, atol=1e-12 * scale)

    # adjoints: (W S W')[a, b] per pair and sum_ab K_ab S^{ka, kb} for a symmetric S
    S = rng.standard_normal((P, P))
    S = S + S.T
    x = S[pat.rows, pat.cols]
    WSW = W @ S @ W.T
    np.testing.assert_allclose(pat.residual_trace_pairs(x), WSW[pat.pair_a, pat.pair_b],
                               rtol=0, atol=1e-12 * np.abs(WSW).max())
    for k, (rd, off) in enumerate(zip(design.random, pat.offsets)):
        K = rd.kinv.toarray()
        t = rd.t
        blocks = S[off:off + rd.q * t, off:off + rd.q * t].reshape(rd.q, t, rd.q, t)
        ref = np.einsum("ab,arbs->rs", K, blocks)
        np.testing.assert_allclose(pat.term_trace(k, x), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_int64_kernels_equal_int32():
    """The kernels are fused over the index type: int64 patterns give the same maps."""
    design = _design(*CASES[1][:6], weights=True)
    pat = MMEPattern(design)
    W = pat.W
    wp, wi = W.indptr.astype(np.int64), W.indices.astype(np.int64)
    a, b = pat.pair_a.astype(np.int64), pat.pair_b.astype(np.int64)
    cp, ci = pat.indptr.astype(np.int64), pat.indices.astype(np.int64)
    npair = len(a)
    m_ptr, d_ptr = np.zeros(npair + 1, np.int64), np.zeros(npair + 1, np.int64)
    e64 = np.empty(0, np.int64)
    _k.residual_map(wp, wi, W.data, a, b, cp, ci, m_ptr, e64, np.empty(0), d_ptr, e64, np.empty(0), False)
    m_ptr, d_ptr = np.cumsum(m_ptr), np.cumsum(d_ptr)
    m_pos, m_val = np.empty(m_ptr[-1], np.int64), np.empty(m_ptr[-1])
    d_pos, d_val = np.empty(d_ptr[-1], np.int64), np.empty(d_ptr[-1])
    missing = _k.residual_map(wp, wi, W.data, a, b, cp, ci, m_ptr, m_pos, m_val, d_ptr, d_pos, d_val, True)
    assert missing == 0
    np.testing.assert_array_equal(m_ptr, pat.M_R.indptr)
    np.testing.assert_array_equal(m_pos, pat.M_R.indices)
    np.testing.assert_array_equal(m_val, pat.M_R.data)
    np.testing.assert_array_equal(d_pos, pat.M_Rdiag.indices)

    # the transpose of the lower pattern (as CSR) back to CSC, both index types
    lower_csr = sp.csc_matrix((np.ones(pat.nnz), pat.indices, pat.indptr)).tocsr()
    for dt in (np.int32, np.int64):
        col_ptr = np.zeros(pat.n_eq + 1, np.int64)
        rows = np.empty(pat.nnz, dt)
        _k.transpose_pattern(lower_csr.indptr.astype(np.int64), lower_csr.indices.astype(dt), col_ptr, rows)
        np.testing.assert_array_equal(col_ptr, pat.indptr)
        np.testing.assert_array_equal(rows, pat.indices)


def test_unknown_position_is_counted():
    """A product outside the given pattern is reported, not written out of bounds."""
    W = sp.csr_matrix(np.array([[1.0, 2.0]]))
    cp = np.array([0, 1, 2], np.int64)          # diagonal-only pattern: (1, 0) is missing
    ci = np.array([0, 1], np.int32)
    a = b = np.zeros(1, np.int64)
    m_ptr = np.array([0, 3], np.int64)
    d_ptr = np.array([0, 2], np.int64)
    out = (np.empty(3, np.int32), np.empty(3), np.empty(2, np.int32), np.empty(2))
    missing = _k.residual_map(W.indptr.astype(np.int64), W.indices.astype(np.int64), W.data, a, b, cp, ci,
                              m_ptr, out[0], out[1], d_ptr, out[2], out[3], True)
    assert missing == 1
    np.testing.assert_array_equal(out[1], [1.0, 2.0, 4.0])
