"""Selected inverse (mvreml.selinv): entries of C^-1 on the factor's pattern.

Every entry is checked against numpy.linalg.inv on random sparse SPD matrices, an
animal-model MME (Henderson's A^-1 of a random pedigree, records, fixed effects that make
dense rows) and a matrix with dense rows, for supernodal and simplicial factors; the
pattern/positions are checked across refactorizations, including exact zeros.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from mvreml.cholmod import analyze

from mvreml._core import selinv as kernel
from mvreml.errors import FactorizationError
from mvreml.selinv import SelectedInverse

MODES = ["supernodal", "simplicial"]


# ---------------------------------------------------------------------------- builders
def henderson_ainv(sire: np.ndarray, dam: np.ndarray) -> sp.csc_matrix:
    """A^-1 by Henderson's rules without inbreeding (parents coded -1 when unknown)."""
    n = sire.size
    ks, kd = sire >= 0, dam >= 0
    alpha = 1.0 / (1.0 - 0.25 * (ks.astype(float) + kd))  # 2, 4/3 or 1
    me = np.arange(n)
    r, c, v = [me], [me], [alpha]
    for par, known in ((sire, ks), (dam, kd)):
        i = me[known]
        r += [i, par[known], par[known]]
        c += [par[known], i, par[known]]
        v += [-alpha[known] / 2, -alpha[known] / 2, alpha[known] / 4]
    both = ks & kd
    i = me[both]
    r += [sire[both], dam[both]]
    c += [dam[both], sire[both]]
    v += [alpha[both] / 4, alpha[both] / 4]
    return sp.csc_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))),
                         shape=(n, n))


def random_pedigree(n: int, rng: np.random.Generator, herd: int = 100,
                    sires_per_gen: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Generations of herds: dams from the same herd one generation back, sires from a
    small pool of the previous generation used across herds (as AI bulls are)."""
    gen = np.arange(n) // (herd * 10)
    ngen = gen[-1] + 1
    start = np.searchsorted(gen, np.arange(ngen))
    sire = np.full(n, -1)
    dam = np.full(n, -1)
    for g in range(1, ngen):
        kids = np.arange(start[g], start[g + 1] if g + 1 < ngen else n)
        prev0, prev1 = start[g - 1], start[g]
        pool = rng.choice(np.arange(prev0, prev1), size=min(sires_per_gen, prev1 - prev0),
                          replace=False)
        sire[kids] = rng.choice(pool, size=kids.size)
        same_herd = prev0 + (kids - start[g]) // herd * herd
        dam[kids] = same_herd + rng.integers(0, herd, size=kids.size)
        sire[kids[rng.random(kids.size) < 0.1]] = -1
        dam[kids[rng.random(kids.size) < 0.1]] = -1
    return sire, dam


def animal_mme(n: int, traits: int = 1, n_fixed: int = 4, seed: int = 0) -> sp.csc_matrix:
    """Lower triangle (CSC) of an animal-model C: X'R^-1X, X'R^-1Z, Z'R^-1Z + A^-1 (x) G^-1.

    70 % of the animals have a record (all traits); fixed effects: an intercept and
    n_fixed - 1 covariates, all dense over records, so C has dense rows. Effects are
    level-major (traits within animal), fixed effects first.
    """
    rng = np.random.default_rng(seed)
    sire, dam = random_pedigree(n, rng)
    ainv = henderson_ainv(sire, dam)
    rec = np.flatnonzero(rng.random(n) < 0.7)
    X = np.column_stack([np.ones(rec.size), rng.normal(size=(rec.size, n_fixed - 1))])
    Z = sp.csc_matrix((np.ones(rec.size), (np.arange(rec.size), rec)), shape=(rec.size, n))
    g = rng.normal(size=(traits, traits))
    ginv = np.linalg.inv(g @ g.T + traits * np.eye(traits))
    h = rng.normal(size=(traits, traits))
    rinv = np.linalg.inv(h @ h.T + traits * np.eye(traits))
    xx = sp.kron(sp.csc_matrix(X.T @ X), rinv)
    xz = sp.kron(sp.csc_matrix(Z.T @ X).T, rinv)
    zz = sp.kron(Z.T @ Z, rinv) + sp.kron(ainv, ginv)
    return sp.tril(sp.bmat([[xx, xz], [xz.T, zz]], format="csc")).tocsc()


def random_spd(n: int, density: float, seed: int, dense_rows: int = 0) -> sp.csc_matrix:
    """Lower triangle of a random sparse SPD matrix; optionally some fully dense rows."""
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=density, random_state=rng, format="csr")
    if dense_rows:
        a = a.tolil()
        for r in rng.choice(n, size=dense_rows, replace=False):
            a[r, :] = rng.normal(size=n) * 0.1
        a = a.tocsr()
    s = a @ a.T + sp.eye(n)  # SPD with a genuine sparse structure
    return sp.tril(s, format="csc")


def full(c_lower: sp.csc_matrix) -> np.ndarray:
    d = c_lower.toarray()
    return d + np.tril(d, -1).T


def factorize(c: sp.csc_matrix, mode: str):
    f = analyze(c, mode=mode, ordering_method="amd")
    f.cholesky_inplace(c)
    return f


def lower_pairs(c: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    coo = c.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def assert_on_pattern(si: SelectedInverse, factor, dense_inv: np.ndarray) -> None:
    """Every entry computed on the factor's pattern equals the dense inverse."""
    z = si.pattern_inverse(factor).tocoo()
    p = np.asarray(factor.P())
    ref = dense_inv[p[z.row], p[z.col]]
    np.testing.assert_allclose(z.data, ref, rtol=1e-10, atol=1e-10 * np.abs(dense_inv).max())


# ---------------------------------------------------------------------------- correctness
CASES = {
    "random_60": lambda: random_spd(60, 0.05, seed=1),
    "random_250": lambda: random_spd(250, 0.01, seed=2),
    "random_600": lambda: random_spd(600, 0.004, seed=3),
    "animal_500x2": lambda: animal_mme(500, traits=2, seed=4),
    "dense_rows_300": lambda: random_spd(300, 0.005, seed=5, dense_rows=3),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_dense_inverse(case, mode):
    c = CASES[case]()
    f = factorize(c, mode)
    dense_inv = np.linalg.inv(full(c))
    rows, cols = lower_pairs(c)
    si = SelectedInverse(f, rows, cols)
    np.testing.assert_allclose(si.values(f), dense_inv[rows, cols], rtol=1e-10,
                               atol=1e-12 * np.abs(dense_inv).max())
    np.testing.assert_allclose(si.diagonal(f), np.diag(dense_inv), rtol=1e-10)
    assert_on_pattern(si, f, dense_inv)


def test_scalar_recursion_equals_supernodal():
    """All supernodes of width one (the scalar Takahashi recursion) give the same numbers."""
    c = animal_mme(400, traits=3, seed=6)
    f = factorize(c, "supernodal")
    L = f.L()
    n = c.shape[0]
    sptr = np.empty(n + 1, dtype=np.int64)
    nsuper = kernel.supernode_partition(L.indptr, L.indices, sptr)
    assert nsuper < n / 2  # 3 traits per animal: supernodes of width >= 3
    out = {}
    for name, part in (("super", sptr[:nsuper + 1]), ("scalar", np.arange(n + 1))):
        zx = np.empty_like(L.data)
        info = np.zeros(2, dtype=np.int64)
        kernel.selinv_supernodal(L.indptr, L.indices, L.data, part, zx, info)
        assert info.tolist() == [0, 0]
        out[name] = zx
    np.testing.assert_allclose(out["scalar"], out["super"], rtol=1e-11, atol=1e-14)


def test_kernel_int64_indices_and_error_codes():
    """int64 index arrays give the same result; a non-Cholesky pattern and a singular
    diagonal are reported through info, not by crashing."""
    c = random_spd(80, 0.05, seed=17)
    L = factorize(c, "supernodal").L()
    res = []
    for dt in (np.int32, np.int64):
        zx = np.empty_like(L.data)
        info = np.zeros(2, dtype=np.int64)
        kernel.selinv_supernodal(L.indptr.astype(dt), L.indices.astype(dt), L.data,
                                 np.arange(81, dtype=np.int64), zx, info)
        assert info.tolist() == [0, 0]
        res.append(zx)
    np.testing.assert_array_equal(res[0], res[1])
    # column 0 has rows {1, 2} but column 1 lacks row 2: fill is missing.
    indptr = np.array([0, 3, 4, 5], dtype=np.int32)
    indices = np.array([0, 1, 2, 1, 2], dtype=np.int32)
    info = np.zeros(2, dtype=np.int64)
    kernel.selinv_supernodal(indptr, indices, np.array([2.0, 0.5, 0.5, 1.0, 1.0]),
                             np.arange(4, dtype=np.int64), np.empty(5), info)
    assert info.tolist() == [1, 0]
    kernel.selinv_supernodal(indptr, indices, np.array([2.0, 0.5, 0.5, 0.0, 1.0]),
                             np.arange(4, dtype=np.int64), np.empty(5), info)
    assert info.tolist() == [2, 1]
    pos = np.empty(3, dtype=np.int64)
    kernel.pair_positions(indptr, indices, np.array([2, 0, 2], dtype=np.int64),
                          np.array([0, 1, 1], dtype=np.int64), pos)
    assert pos.tolist() == [2, 1, -1]


def test_reversed_pairs_and_original_ordering():
    """Pairs are in C's ordering, either triangle; values follow the order given."""
    c = random_spd(120, 0.03, seed=7)
    f = factorize(c, "supernodal")
    assert not np.array_equal(np.asarray(f.P()), np.arange(120))  # AMD really permutes
    dense_inv = np.linalg.inv(full(c))
    rows, cols = lower_pairs(c)
    order = np.random.default_rng(0).permutation(rows.size)
    si = SelectedInverse(f, cols[order], rows[order])  # upper triangle, shuffled
    np.testing.assert_allclose(si.values(f), dense_inv[rows[order], cols[order]], rtol=1e-10)


# ---------------------------------------------------------------------------- iterates
@pytest.mark.parametrize("mode", MODES)
def test_factor_L_is_LLt_and_refactorization_still_solves(mode):
    """Factor.L() is the LL' factor of C[P][:, P] in both modes (the simplicial LDL' factor is
    converted in place); refactorizing and solving afterwards still give C^-1 b."""
    c = animal_mme(300, traits=2, seed=15)
    f = factorize(c, mode)
    L = f.L()
    p = np.asarray(f.P())
    np.testing.assert_allclose((L @ L.T).toarray(), full(c)[np.ix_(p, p)], atol=1e-10)
    SelectedInverse(f, *lower_pairs(c)).compute(f)
    c2 = c.copy()
    c2.setdiag(c2.diagonal() * 2.0)
    f.cholesky_inplace(c2)
    b = np.arange(c.shape[0], dtype=float)
    np.testing.assert_allclose(f.solve_A(b), np.linalg.solve(full(c2), b), rtol=1e-9)
    assert f.logdet() == pytest.approx(np.linalg.slogdet(full(c2))[1], rel=1e-12)


def test_analysed_only_factor_raises():
    c = random_spd(50, 0.05, seed=16)
    for mode in MODES:
        with pytest.raises(FactorizationError, match="factorized"):
            SelectedInverse(analyze(c, mode=mode), [0], [0])


@pytest.mark.parametrize("mode", MODES)
def test_positions_stable_across_refactorization(mode):
    """New values on the same pattern, with exact zeros on off-diagonal entries."""
    c = animal_mme(400, traits=2, seed=8)
    f = factorize(c, mode)
    rows, cols = lower_pairs(c)
    si = SelectedInverse(f, rows, cols)
    indices0 = f.L().indices.copy()
    rng = np.random.default_rng(9)
    for it in range(3):
        c2 = c.copy()
        offdiag = c2.indices != np.repeat(np.arange(c2.shape[0]), np.diff(c2.indptr))
        scale = rng.uniform(0.5, 1.5, size=offdiag.sum())
        scale[rng.random(scale.size) < 0.3] = 0.0  # explicit zeros, kept in the pattern
        c2.data[offdiag] *= scale
        c2.data[~offdiag] += 1.0  # stays SPD with weakened couplings
        assert (c2.data == 0).sum() > 0 and c2.nnz == c.nnz
        f.cholesky_inplace(c2)
        assert np.array_equal(f.L().indices, indices0)
        dense_inv = np.linalg.inv(full(c2))
        np.testing.assert_allclose(si.values(f), dense_inv[rows, cols], rtol=1e-10,
                                   atol=1e-12 * np.abs(dense_inv).max())
        assert_on_pattern(si, f, dense_inv)


def test_simplicial_pattern_change_is_detected():
    """Dropping C's explicit zeros shrinks a simplicial pattern: positions are redone."""
    c = random_spd(200, 0.01, seed=10)
    f = factorize(c, "simplicial")
    diag = c.diagonal()
    keep = np.flatnonzero(np.abs(c.data) > np.quantile(np.abs(c.data), 0.3))
    coo = c.tocoo()
    c2 = sp.csc_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=c.shape)
    c2.setdiag(diag + 5.0)
    si = SelectedInverse(f, np.arange(200), np.arange(200))
    nnz0 = si.nnz
    f.cholesky_inplace(c2)
    assert f.L().nnz < nnz0  # the simplicial pattern really shrank
    np.testing.assert_allclose(si.diagonal(f), np.diag(np.linalg.inv(full(c2))), rtol=1e-10)
    assert si.nnz == f.L().nnz


@pytest.mark.parametrize("mode", MODES)
def test_pair_outside_pattern_raises(mode):
    c = random_spd(150, 0.01, seed=11)
    f = factorize(c, mode)
    L = f.L()
    p = np.asarray(f.P())
    have = set(zip(*[p[x] for x in (L.tocoo().row, L.tocoo().col)]))
    i, j = next((i, j) for i in range(150) for j in range(i) if (i, j) not in have
                and (j, i) not in have)
    rows, cols = lower_pairs(c)
    with pytest.raises(FactorizationError, match=rf"\({i}, {j}\)"):
        SelectedInverse(f, np.append(rows, i), np.append(cols, j))


def test_compute_once_then_read():
    c = random_spd(100, 0.03, seed=12)
    f = factorize(c, "supernodal")
    dense_inv = np.linalg.inv(full(c))
    rows, cols = lower_pairs(c)
    si = SelectedInverse(f, rows[:5], cols[:5])
    with pytest.raises(FactorizationError):
        si.values()
    si.compute(f)
    np.testing.assert_allclose(si.values(), dense_inv[rows[:5], cols[:5]], rtol=1e-10)
    np.testing.assert_allclose(si.diagonal(), np.diag(dense_inv), rtol=1e-10)


# ---------------------------------------------------------------------------- scale
def test_animal_model_at_scale():
    """100k-animal MME: columns of C^-1 from solves agree with the selected inverse."""
    c = animal_mme(100_000, traits=1, seed=13)
    t0 = time.perf_counter()
    f = analyze(c, mode="supernodal", ordering_method="amd")
    t1 = time.perf_counter()
    f.cholesky_inplace(c)
    t2 = time.perf_counter()
    rows, cols = lower_pairs(c)
    si = SelectedInverse(f, rows, cols)
    t3 = time.perf_counter()
    si.compute(f)
    t4 = time.perf_counter()
    n = c.shape[0]
    probe = np.random.default_rng(14).choice(n, size=5, replace=False)
    e = np.zeros((n, probe.size))
    e[probe, np.arange(probe.size)] = 1.0
    cols_inv = f.solve_A(e)
    np.testing.assert_allclose(si.diagonal()[probe], cols_inv[probe, np.arange(probe.size)],
                               rtol=1e-9)
    z = si.pattern_inverse().tocsc()
    p = np.asarray(f.P())
    pinv = np.argsort(p)
    for q, j in enumerate(probe):
        col = z[:, pinv[j]].tocoo()  # entries below the diagonal in permuted column
        np.testing.assert_allclose(col.data, cols_inv[p[col.row], q], rtol=1e-8,
                                   atol=1e-10 * cols_inv[j, q])
    print(f"\nn={n} nnz(L)={si.nnz} supernodes={si.n_supernodes} analyze={t1 - t0:.2f}s "
          f"factorize={t2 - t1:.2f}s positions={t3 - t2:.2f}s selinv={t4 - t3:.2f}s")


# ---------------------------------------------------------------------------- supernodal, in place
def supernodal_pattern(f):
    """(rows, cols, positions in x) of every entry of L's pattern, permuted coordinates."""
    sup, pi, px, s = f._f.supernodes()
    rows, cols, pos = [], [], []
    for j in range(sup.size - 1):
        w, nsrow = sup[j + 1] - sup[j], pi[j + 1] - pi[j]
        for t in range(w):
            r = s[pi[j] + t:pi[j + 1]]
            rows.append(r)
            cols.append(np.full(r.size, sup[j] + t))
            pos.append(px[j] + t * nsrow + np.arange(t, nsrow))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(pos)


def supernodal_factor(c, ordering="amd"):
    from mvreml.chol import SupernodalFactor

    f = SupernodalFactor(c, ordering=ordering)
    f.factorize(c)
    return f


def widths(f):
    return np.diff(f._f.supernodes()[0])


SUPER_CASES = dict(CASES, diagonal_40=lambda: sp.diags(np.linspace(1, 3, 40), format="csc"),
                   dense_150=lambda: sp.tril(sp.csc_matrix(np.cov(np.random.default_rng(6).normal(
                       size=(150, 400))) + np.eye(150)), format="csc"),
                   tiny_3=lambda: sp.tril(sp.csc_matrix(np.array([[4.0, 1, 0], [1, 3, 1], [0, 1, 2]])), format="csc"))


@pytest.mark.parametrize("ordering", ["amd", "metis", "natural"])
@pytest.mark.parametrize("case", sorted(SUPER_CASES))
def test_supernodal_in_place_matches_dense_inverse(case, ordering):
    """Every entry the in-place kernel writes over L equals numpy's inverse."""
    from mvreml.chol import SupernodalInverse

    c = SUPER_CASES[case]()
    dense_inv = np.linalg.inv(full(c))
    f = supernodal_factor(c, ordering)
    r, k, pos = supernodal_pattern(f)
    rows, cols = lower_pairs(c)
    si = SupernodalInverse(f, rows, cols)
    got = si.values(f)
    assert f.state == "consumed"
    np.testing.assert_allclose(got, dense_inv[rows, cols], rtol=1e-10, atol=1e-12 * np.abs(dense_inv).max())
    z = f._f.values()[pos]
    np.testing.assert_allclose(z, dense_inv[f.perm[r], f.perm[k]], rtol=1e-10,
                               atol=1e-12 * np.abs(dense_inv).max())
    np.testing.assert_allclose(si.diagonal(), np.diag(dense_inv), rtol=1e-10)


def test_supernode_shapes_are_exercised():
    """The cases above include 1 x 1 supernodes only, one big dense supernode, and a mixture."""
    assert widths(supernodal_factor(SUPER_CASES["diagonal_40"]())).max() == 1
    assert widths(supernodal_factor(SUPER_CASES["dense_150"]())).tolist() == [150]
    w = widths(supernodal_factor(SUPER_CASES["animal_500x2"]()))
    assert w.size > 10 and w.max() >= 8 and np.unique(w).size >= 2


@pytest.mark.parametrize("case", ["random_250", "animal_500x2", "dense_rows_300"])
def test_supernodal_equals_csc_reference_kernel(case):
    """The supernodal kernel and the CSC kernel (the reference) agree on the same L."""
    c = CASES[case]()
    f = supernodal_factor(c)
    r, k, pos = supernodal_pattern(f)
    x = f._f.values()
    L = sp.csc_matrix((x[pos], (r, k)), shape=c.shape)
    L.sort_indices()
    part = np.empty(c.shape[0] + 1, dtype=np.int64)
    ns = kernel.supernode_partition(L.indptr, L.indices, part)
    zx, info = np.empty_like(L.data), np.zeros(2, dtype=np.int64)
    kernel.selinv_supernodal(L.indptr, L.indices, L.data, part[:ns + 1].copy(), zx, info)
    assert info.tolist() == [0, 0]
    ref = sp.csc_matrix((zx, L.indices, L.indptr), shape=c.shape).tocoo()
    from mvreml.chol import SupernodalInverse

    si = SupernodalInverse(f, f.perm[ref.row], f.perm[ref.col])
    np.testing.assert_allclose(si.values(f), ref.data, rtol=1e-11, atol=1e-14)


def test_buffer_mode_keeps_the_factor_and_in_place_consumes_it():
    from mvreml.chol import SupernodalInverse

    c = random_spd(200, 0.02, seed=21)
    rows, cols = lower_pairs(c)
    f = supernodal_factor(c)
    b = np.arange(200.0)
    x0 = f.solve(b)
    kept = SupernodalInverse(f, rows, cols, in_place=False).values(f)
    assert f.state == "numeric"
    np.testing.assert_array_equal(f.solve(b), x0)       # L untouched
    si = SupernodalInverse(f, rows, cols)
    np.testing.assert_array_equal(si.values(f), kept)
    assert f.state == "consumed"
    with pytest.raises(FactorizationError, match="consumed"):
        f.solve(b)
    with pytest.raises(FactorizationError):
        f.logdet()
    np.testing.assert_array_equal(si.values(f), kept)   # read again, not recomputed over Z
    f.factorize(c)                                      # refactorized: solvable, inverse gone
    np.testing.assert_allclose(f.solve(b), x0, rtol=1e-13)
    with pytest.raises(FactorizationError, match="current factor"):
        si.values()


def test_supernodal_pair_outside_pattern_and_out_of_range():
    from mvreml.chol import SupernodalInverse

    c = sp.diags(np.ones(5) * 2.0, format="csc")
    f = supernodal_factor(c, "natural")
    with pytest.raises(FactorizationError, match=r"outside the pattern.*\(3, 0\)"):
        SupernodalInverse(f, [0, 3], [0, 0])
    with pytest.raises(ValueError, match="out of range"):
        SupernodalInverse(f, [7], [0])


@pytest.mark.parametrize("case", ["diagonal_40", "dense_150"])
def test_supernodal_zero_pivot_is_reported(case):
    """A zero on L's diagonal (loops path: 1 x 1 supernodes; BLAS path: one 150-wide supernode)."""
    from mvreml._core import supinv
    from mvreml.chol import SupernodalInverse

    c = SUPER_CASES[case]()
    f = supernodal_factor(c)
    si = SupernodalInverse(f, *lower_pairs(c))
    x = f._f.values()
    x[f._diag[7]] = 0.0
    with pytest.raises(FactorizationError, match=f"permuted column 7 .column {f.perm[7]} of C"):
        si.compute(f)
    assert f.state == "consumed"           # partly overwritten: no solve may use it
    sup, pi, px, s = f._f.supernodes()
    assert supinv.check_structure(sup, pi, px, s, c.shape[0], x.size) == 0
    assert supinv.check_structure(sup[::-1].copy(), pi, px, s, c.shape[0], x.size) != 0


def test_supernodal_inverse_kernel_looks_at_signals():
    """A signal during the in-place inverse (Ctrl-C on a long fit) ends the kernel within its
    next SIGNAL_FLOPS of work, with code 4, instead of minutes later on a large factor."""
    import signal

    from mvreml._core import supinv

    rng = np.random.default_rng(3)
    blocks = []
    for _ in range(3000):                     # 3,000 dense 100 x 100 supernodes: ~3e9 flops
        a = rng.standard_normal((100, 100))
        blocks.append(a @ a.T + 100 * np.eye(100))
    c = sp.tril(sp.block_diag(blocks, format="csc"), format="csc")
    f = supernodal_factor(c, "natural")
    sup, pi, px, s_ = f._f.supernodes()
    x = f._f.values()
    info = np.zeros(2, dtype=np.int64)
    t0 = time.perf_counter()
    supinv.selinv_inplace(sup, pi, px, s_, x, info)         # uninterrupted: the whole kernel
    whole = time.perf_counter() - t0
    assert info[0] == 0
    f.factorize(c)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, whole / 10)
        t0 = time.perf_counter()
        supinv.selinv_inplace(sup, pi, px, s_, x, info)
        stopped = time.perf_counter() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert info[0] == 4 and 0 <= info[1] < c.shape[0]
    assert stopped < 0.6 * whole


def test_an_interrupted_inverse_raises_and_leaves_nothing_to_read(monkeypatch):
    """chol's wrapper of the kernel: code 4 is KeyboardInterrupt, the factor consumed (x is
    partly overwritten: solves refactorize) and no partial inverse left to read."""
    from mvreml import chol
    from mvreml.chol import SupernodalInverse

    c = SUPER_CASES[sorted(SUPER_CASES)[0]]()
    f = supernodal_factor(c, "amd")
    rows, cols = lower_pairs(c)
    si = SupernodalInverse(f, rows, cols)
    si.compute(f)                                            # a good inverse first
    f.factorize(c)

    def interrupted(sup, pi, px, s, x, info):
        info[0], info[1] = 4, 0
    monkeypatch.setattr(chol._k, "selinv_inplace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        si.compute(f)
    assert f.state == "consumed" and not f.solvable
    with pytest.raises(FactorizationError, match="no selected inverse"):
        si.values()
