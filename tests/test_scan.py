"""Model.scan: extra fixed columns at fixed variance parameters (GWAS), against with_fixed
fits with every parameter fixed and against dense generalized least squares."""
import numpy as np
import pytest

import mvreml
from mvreml.errors import ArgumentError, DataError
from mvreml.structures import US, Idv
from dense import dense_parts, dense_V
from test_model import _small


def _snps(n, m, seed=0):
    rng = np.random.default_rng(seed)
    maf = rng.uniform(0.05, 0.5, m)
    return rng.binomial(2, maf, size=(n, m)).astype(float)


@pytest.mark.parametrize("t", [1, 2])
def test_scan_equals_with_fixed_fits_with_all_parameters_fixed(t):
    Y, Z, lv = _small(seed=6, t=t, n=160, q=20)
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(len(Y)), rng.normal(size=len(Y))])
    st = US(2) if t == 2 else Idv(1)
    m = mvreml.Model(Y, X, random=[mvreml.Random(Z, st, name="fam")],
                     weights=rng.uniform(0.5, 2.0, len(Y)))
    res = m.fit()
    theta = res.varcomp["estimate"].to_numpy()
    G = _snps(len(Y), 5, seed=t)
    G[:, 3] = 1.0                                     # monomorphic: aliased with the intercept
    out = m.scan(G, names=[f"snp{k}" for k in range(5)])
    assert list(out.index.get_level_values("column").unique()) == [f"snp{k}" for k in range(5)]
    assert out.loc["snp3", "aliased"].all() and out.loc["snp3", "estimate"].isna().all()
    traits = m.traits
    for k in (0, 1, 2, 4):
        mk = m.with_fixed(np.column_stack([X, G[:, k]]))
        fk = mk.fit(init=theta, fix=mk.terms)
        names = [n for n in fk.fixef.index if n.endswith("x3")]
        assert len(names) == t
        for j, trait in enumerate(traits):
            row = out.loc[(f"snp{k}", trait)]
            ref = fk.fixef.loc[names[j]]
            assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-8, abs=1e-12)
            assert row["std_error"] == pytest.approx(ref["std_error"], rel=1e-8)
        # the joint Wald statistic is b' Var(b)^-1 b of the fixed fit's covariance block
        idx = [list(fk.fixef.index).index(nm) for nm in names]
        b = fk.fixef.loc[names, "estimate"].to_numpy()
        V = fk.fixef_vcov[np.ix_(idx, idx)]
        assert out.loc[(f"snp{k}", traits[0]), "wald"] == pytest.approx(b @ np.linalg.solve(V, b), rel=1e-7)
    # default theta: the model's last fit; an explicit theta gives the same
    explicit = m.scan(G[:, :2], theta=theta)
    np.testing.assert_allclose(explicit["estimate"].to_numpy(), out["estimate"].to_numpy()[:2 * t])


def test_scan_against_dense_gls():
    Y, Z, lv = _small(seed=7, t=1, n=100, q=12)
    y = Y[:, 0]
    X = np.ones((len(y), 1))
    m = mvreml.Model(y, X, random=[mvreml.Random(Z, name="fam")])
    theta = np.array([0.7, 1.3])
    G = _snps(len(y), 3, seed=9)
    out = m.scan(G, theta=theta)
    d = m.design
    mats = [b.structure.matrix(theta[b.slice]) for b in m.blocks]
    parts = dense_parts(d)
    Vi = np.linalg.inv(dense_V(d, mats, parts))
    assert d.n_obs < len(y)                          # rows with a missing y are not records
    for k in range(3):
        Xf = np.column_stack([parts[0], G[d.unit_rows[d.obs_unit], k]])
        C = np.linalg.inv(Xf.T @ Vi @ Xf)
        b = C @ Xf.T @ Vi @ d.y
        assert out["estimate"].iloc[k] == pytest.approx(b[1], rel=1e-9)
        assert out["std_error"].iloc[k] == pytest.approx(np.sqrt(C[1, 1]), rel=1e-9)


def test_scan_errors():
    Y, Z, lv = _small(seed=8, t=1, n=60, q=10)
    m = mvreml.Model(Y[:, 0], np.ones((60, 1)), random=[mvreml.Random(Z, name="fam")])
    with pytest.raises(ArgumentError, match="call fit"):
        m.scan(np.ones((60, 1)))
    with pytest.raises(ArgumentError, match=r"shape \(59, 1\) but y has 60 rows"):
        m.scan(np.ones((59, 1)), theta=[1.0, 1.0])
    G = np.ones((60, 2))
    G[5, 1] = np.nan
    with pytest.raises(DataError, match="row 5, column 1"):
        m.scan(G, theta=[1.0, 1.0])
    with pytest.raises(ArgumentError, match="outside the parameter space"):
        m.scan(np.ones((60, 1)), theta=[-1.0, 1.0])
