"""mvreml.Model, the array route: the same fits as the formula route, Z of any values against
the dense computation, refits, named parameters, typed errors for bad arrays."""
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mvreml
from mvreml.errors import ArgumentError, DataError, RelmatError, StartingValueError
from mvreml.pedigree import normalize_ids
from mvreml.structures import AR1, US, Corgh, Diag, Idv, Product
from dense import dense_loglik, dense_score_ai
from test_reml import SEED_FIXED, SEED_MODEL, seed_trial


def incidence(labels, levels=None):
    """n x q incidence matrix of labels (levels: their order, default sorted unique)."""
    labels = np.asarray(labels).astype(str)
    levels = np.unique(labels) if levels is None else np.asarray(levels).astype(str)
    col = pd.Index(levels).get_indexer(labels)
    assert (col >= 0).all()
    n = len(labels)
    return sp.csr_matrix((np.ones(n), (np.arange(n), col)), shape=(n, len(levels))), levels


def assert_same_fit(a, b, tol=1e-10):
    """log L, every component, fixed effects and BLUPs equal (relative tol)."""
    assert b.loglik == pytest.approx(a.loglik, rel=tol, abs=tol)
    assert list(a.varcomp.index) == list(b.varcomp.index)
    np.testing.assert_allclose(b.varcomp["estimate"], a.varcomp["estimate"], rtol=tol, atol=tol)
    np.testing.assert_allclose(b.varcomp["std_error"], a.varcomp["std_error"], rtol=1e-8, atol=1e-12)
    assert list(b.varcomp["bound"]) == list(a.varcomp["bound"])
    fa = a.fixef.sort_index()
    fb = b.fixef.sort_index()
    np.testing.assert_allclose(fb["estimate"], fa["estimate"], rtol=1e-8, atol=1e-10)
    for term in a.blups:
        A = a.blups[term].sort_index()
        B = b.blups[term].loc[A.index]
        np.testing.assert_allclose(B.to_numpy(float), A.to_numpy(float), rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def gryphon(gryphon_data):
    g, ped = gryphon_data
    g = g.copy()
    rel = mvreml.relmat.as_relmat(ped, "ped")
    Za, _ = incidence(normalize_ids(g["animal"].to_numpy()), rel.labels)
    return g, ped, Za


def _quiet(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mvreml.errors.DataWarning)
        return f(*args, **kw)


def test_gryphon_univariate_matches_formula(gryphon):
    g, ped, Za = gryphon
    ref = _quiet(mvreml.fit, "bwt ~ 1 + sex", random="~ vm(animal, ped) + byear", data=g, relmat={"ped": ped})
    Zb, by = incidence(g["byear"])
    X = np.column_stack([np.ones(len(g)), (g["sex"] == "2").astype(float)])
    m = _quiet(mvreml.Model, g["bwt"].to_numpy(), X, traits=["bwt"], fixef_names=["(Intercept)", "sex[T.2]"],
               random=[mvreml.Random(Za, K=ped, name="animal"), mvreml.Random(Zb, name="byear", levels=by)])
    res = m.fit()
    assert_same_fit(ref, res)
    assert res.n_obs == ref.n_obs == 854
    assert m.parameter_names == ["animal", "byear", "units"]
    # one engine: the same long-format design
    assert m.design.n_obs == 854 and m.design.p == 2


def test_gryphon_bivariate_matches_formula(gryphon):
    g, ped, Za = gryphon
    for struct, S in (("us", US(2)), ("corgh", Corgh(2))):
        ref = _quiet(mvreml.fit, "cbind(bwt, tarsus) ~ trait", random=f"~ {struct}(trait):vm(animal, ped)",
                     residual="~ units:us(trait)", data=g, relmat={"ped": ped})
        m = _quiet(mvreml.Model, g[["bwt", "tarsus"]].to_numpy(), np.ones((len(g), 1)), traits=["bwt", "tarsus"],
                   fixef_names=["1"], random=[mvreml.Random(Za, S, K=ped, name="animal")],
                   residual=mvreml.Residual(US(2)))
        res = m.fit()
        assert_same_fit(ref, res)
        assert res.n_obs == 854 + 683


def test_seed_trial_matches_formula():
    data = seed_trial()
    ref = _quiet(mvreml.fit, SEED_FIXED, data=data, **SEED_MODEL)
    Zb, blocks = incidence(data["Block"])
    Zr, rils = incidence(data["RIL"])
    m = mvreml.Model(data[["HD", "HT", "GY"]].to_numpy(), np.ones((len(data), 1)), traits=["HD", "HT", "GY"],
                     random=[mvreml.Random(Zb, Diag(3), name="Block", levels=blocks),
                             mvreml.Random(Zr, US(3), name="RIL", levels=rils)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = m.fit()
    assert_same_fit(ref, res)
    assert "B" in set(res.varcomp["bound"])          # the RIL matrix held singular, as the formula fit


# ---------------------------------------------------------------- Z of any values, dense reference
def _long(Y, X, Zs_terms):
    """Independent long format: observations unit-major / trait-minor; X per trait; Z_long per
    term (c coefficient matrices, G on traits (x) coefficients)."""
    units, traits = np.nonzero(~np.isnan(Y))
    N, t = len(units), Y.shape[1]
    p = X.shape[1]
    XL = np.zeros((N, t * p))
    for o, (i, j) in enumerate(zip(units, traits)):
        XL[o, j * p:(j + 1) * p] = X[i]
    ZL = []
    for Zs in Zs_terms:
        Zs = [np.asarray(Z.todense()) for Z in Zs]
        q, c = Zs[0].shape[1], len(Zs)
        Z = np.zeros((N, q * t * c))
        for o, (i, j) in enumerate(zip(units, traits)):
            for m, Zm in enumerate(Zs):
                Z[o, np.arange(q) * t * c + j * c + m] = Zm[i]
        ZL.append(Z)
    return XL, ZL


def _check_dense(m, Y, X, Zs_terms, theta):
    XL, ZL = _long(Y, X, Zs_terms)
    d = m.design
    np.testing.assert_allclose(d.X.toarray(), XL)       # same column order (full rank here)
    parts = (XL, ZL, [np.eye(Z.shape[1] // b.structure.t) for Z, b in zip(ZL, m.blocks)])
    mats = [b.structure.matrix(theta[b.slice]) for b in m.blocks]
    assert m.loglik(theta) == pytest.approx(dense_loglik(d, mats, parts), rel=1e-10)
    ev = m.evaluate(theta)
    import dense
    orig = dense.dense_parts
    dense.dense_parts = lambda design: parts       # the dense score on the independent Z
    try:
        score, ai = dense_score_ai(d, m.blocks, theta)
    finally:
        dense.dense_parts = orig
    np.testing.assert_allclose(ev.score, score, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ev.ai, ai, rtol=1e-7, atol=1e-9)


def test_random_regression_through_arrays_matches_dense():
    rng = np.random.default_rng(3)
    n, q = 90, 12
    subj = rng.integers(0, q, n)
    x = rng.uniform(-1, 1, n)
    Z0 = sp.csr_matrix((np.ones(n), (np.arange(n), subj)), shape=(n, q))
    Z1 = sp.csr_matrix((x, (np.arange(n), subj)), shape=(n, q))       # covariate-valued
    Y = np.column_stack([rng.normal(size=n), rng.normal(size=n)])
    Y[rng.random(n) < 0.15, 1] = np.nan
    # a fit needs real effects: intercepts and slopes per subject, correlated across traits
    U = rng.multivariate_normal(np.zeros(4), np.kron([[1.0, 0.5], [0.5, 1.0]], [[2.0, 0.4], [0.4, 1.0]]), q)
    fitY = rng.normal(size=(4 * q, 2)) * 0.7
    sub = rng.integers(0, q, 4 * q)
    xs = rng.uniform(-1, 1, 4 * q)
    fitY += U[sub][:, [0, 2]] + U[sub][:, [1, 3]] * xs[:, None]
    X = np.column_stack([np.ones(n), x])
    st = Product(US(2), US(2, dim="coef"))
    m = mvreml.Model(Y, X, random=[mvreml.Random([Z0, Z1], st, name="subject", coefficients=["int", "slope"])])
    assert m.design.random[0].comp_labels == ["y1:int", "y1:slope", "y2:int", "y2:slope"]
    theta = np.array([1.0, 0.3, 0.8, 1.0, -0.2, 0.5, 1.5, 0.4, 1.2])
    _check_dense(m, Y, X, [[Z0, Z1]], theta)
    ZF0 = sp.csr_matrix((np.ones(4 * q), (np.arange(4 * q), sub)), shape=(4 * q, q))
    ZF1 = sp.csr_matrix((xs, (np.arange(4 * q), sub)), shape=(4 * q, q))
    mf = mvreml.Model(fitY, np.column_stack([np.ones(4 * q), xs]),
                      random=[mvreml.Random([ZF0, ZF1], st, name="subject", coefficients=["int", "slope"])])
    res = mf.fit()
    assert res.converged
    assert list(res.varcomp.index[3:6]) == ["subject!coef_int:int", "subject!coef_slope:int",
                                            "subject!coef_slope:slope"]
    assert res.varcomp["bound"].iloc[3] == "F"        # the product's second scale is held at 1


def test_multiple_membership_matches_dense():
    rng = np.random.default_rng(5)
    n, q = 80, 10
    a, b = rng.integers(0, q, n), rng.integers(0, q, n)
    Z = sp.csr_matrix((np.full(2 * n, 0.5), (np.r_[np.arange(n), np.arange(n)], np.r_[a, b])), shape=(n, q))
    assert Z.nnz > n                                   # two memberships per row (or 1.0 on one)
    y = rng.normal(size=n) + Z @ rng.normal(size=q)
    X = np.ones((n, 1))
    m = mvreml.Model(y, X, random=[mvreml.Random(Z, Idv(1), name="school")])
    _check_dense(m, y[:, None], X, [[Z]], np.array([0.7, 1.3]))


def test_ar1_residual_over_repeated_measures():
    """Four measurement times as traits, an AR1 residual over them and random group effects
    (diag over the times), against the dense computation; the fit recovers rho."""
    rng = np.random.default_rng(11)
    n, t = 150, 4
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    E = rng.multivariate_normal(np.zeros(t), 2.0 * 0.6 ** lag, n)
    grp = rng.integers(0, 30, n)
    Z, _ = incidence(grp.astype(str))
    Y = 5.0 + rng.normal(size=(30, t))[grp] * 0.8 + E
    Y[rng.random((n, t)) < 0.1] = np.nan
    Y[np.isnan(Y).all(axis=1), 0] = 1.0
    X = np.ones((n, 1))
    m = mvreml.Model(Y, X, random=[mvreml.Random(Z, Diag(t), name="grp")], residual=mvreml.Residual(AR1(t)))
    assert m.parameter_names[-2:] == ["units:trait!cor", "units:trait"]
    _check_dense(m, Y, X, [[Z]], np.array([0.5, 0.7, 0.6, 0.8, 0.4, 1.7]))
    res = m.fit()
    assert res.converged
    assert res.varcomp.loc["units:trait!cor", "estimate"] == pytest.approx(0.6, abs=0.1)


def test_relationship_given_as_K_and_as_Kinv_agree():
    rng = np.random.default_rng(7)
    n, q = 60, 15
    A = rng.normal(size=(q, q + 3))
    K = A @ A.T / (q + 3) + 0.1 * np.eye(q)
    Z, _ = incidence(rng.integers(0, q, n).astype(str), [str(i) for i in range(q)])
    y = rng.normal(size=n)
    mk = mvreml.Model(y, np.ones((n, 1)), random=[mvreml.Random(Z, K=sp.csr_matrix(K), name="g")])
    mi = mvreml.Model(y, np.ones((n, 1)), random=[mvreml.Random(Z, Kinv=np.linalg.inv(K), name="g")])
    theta = np.array([0.6, 1.1])
    assert mk.loglik(theta) == pytest.approx(mi.loglik(theta), rel=1e-10)
    XL, ZL = _long(y[:, None], np.ones((n, 1)), [[Z]])
    mats = [b.structure.matrix(theta[b.slice]) for b in mk.blocks]
    assert mk.loglik(theta) == pytest.approx(dense_loglik(mk.design, mats, (XL, ZL, [K])), rel=1e-10)


# ---------------------------------------------------------------- named parameters, solve, fix
def _small(seed=1, t=2, n=120, q=15):
    rng = np.random.default_rng(seed)
    grp = rng.integers(0, q, n)
    Z, lv = incidence(grp.astype(str))
    U = rng.normal(size=(q, t))
    Y = 1.0 + U[grp] + rng.normal(size=(n, t))
    Y[rng.random(n) < 0.1, t - 1] = np.nan          # missing traits, never a whole row
    return Y, Z, lv


def test_named_parameters_solve_and_fix_by_label():
    Y, Z, lv = _small()
    m = mvreml.Model(Y, np.ones((len(Y), 1)), traits=["a", "b"], random=[mvreml.Random(Z, US(2), name="fam",
                                                                                          levels=lv)])
    names = m.parameter_names
    assert names[:3] == ["fam:trait!a:a", "fam:trait!b:a", "fam:trait!b:b"]
    res = m.fit()
    theta = res.varcomp["estimate"].to_numpy()
    named = m.named(theta)
    assert m.loglik(named) == m.loglik(theta) == pytest.approx(res.loglik, rel=1e-12)
    s = m.solve(named)
    np.testing.assert_allclose(s.blups["fam"], res.blups["fam"][["a", "b"]].to_numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s.pev["fam"], res.blups["fam"][["pev_a", "pev_b"]].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(s.fixef, res.fixef["estimate"].to_numpy(), rtol=1e-9)
    assert s.columns["fam"] == ["a", "b"] and s.levels["fam"] == list(lv)
    obs = ~np.isnan(Y)
    assert np.isnan(s.residuals[~obs]).all() and np.isfinite(s.residuals[obs]).all()
    # a us matrix moves as a whole: one of its elements cannot be held alone (said, not ignored)
    with pytest.raises(ArgumentError, match="only as a whole term"):
        m.fit(init={"fam:trait!b:a": 0.0}, fix=["fam:trait!b:a"])
    with pytest.raises(StartingValueError, match="init= gives no value"):
        m.fit(fix="fam:trait!b:a")
    with pytest.raises(ArgumentError, match="neither a term"):
        m.fit(fix="famm")
    # one variance of a diag term held by its label: it stays, the others move
    md = mvreml.Model(Y, np.ones((len(Y), 1)), traits=["a", "b"], random=[mvreml.Random(Z, Diag(2), name="fam")])
    free = md.fit()
    held = md.fit(init={"fam:trait!b": 0.25}, fix=["fam:trait!b"])
    assert held.varcomp.loc["fam:trait!b", "estimate"] == 0.25
    assert held.varcomp.loc["fam:trait!b", "bound"] == "F"
    assert held.varcomp.loc["fam:trait!a", "bound"] == "P"
    assert held.varcomp.loc["fam:trait!a", "estimate"] != pytest.approx(0.25)
    assert held.loglik <= free.loglik + 1e-8


# ---------------------------------------------------------------- refits
def test_refit_with_new_response_equals_fresh_fit_and_reuses_analysis():
    Y, Z, lv = _small(seed=2)
    X = np.ones((len(Y), 1))
    m = mvreml.Model(Y, X, random=[mvreml.Random(Z, US(2), name="fam")])
    m.fit()
    rng = np.random.default_rng(9)
    Y2 = np.where(np.isnan(Y), np.nan, Y + rng.normal(size=Y.shape))
    m2 = m.with_response(Y2)
    assert m2._reml.pattern is m._reml.pattern                  # the MME pattern is shared
    assert m2._reml.factor is not None and m2._reml.factor is not m._reml.factor
    refit = m.refit(Y2)
    assert "symbolic" not in refit.model["timings"]              # no new symbolic analysis
    fresh = mvreml.Model(Y2, X, random=[mvreml.Random(Z, US(2), name="fam")]).fit()
    assert "symbolic" in fresh.model["timings"]
    assert_same_fit(fresh, refit, tol=1e-10)
    # the original model is untouched by its copy's factorizations
    theta = m.fit().varcomp["estimate"].to_numpy()
    ll = m.loglik(theta)
    m2.loglik(theta * 1.1)
    assert m.solve(theta).loglik == ll
    # a new missing-value pattern: built afresh, still the fresh fit
    Y3 = Y2.copy()
    Y3[0, 0] = np.nan if not np.isnan(Y3[0, 0]) else 1.0
    m3 = m.with_response(Y3)
    assert m3._reml.pattern is not m._reml.pattern
    assert_same_fit(mvreml.Model(Y3, X, random=[mvreml.Random(Z, US(2), name="fam")]).fit(), m3.fit())
    with pytest.raises(ArgumentError, match=r"shape \(120, 1\)"):
        m.with_response(Y[:, :1])


def test_with_fixed_equals_fresh_model():
    Y, Z, lv = _small(seed=4)
    rng = np.random.default_rng(1)
    snp = rng.integers(0, 3, len(Y)).astype(float)
    X = np.ones((len(Y), 1))
    X2 = np.column_stack([X, snp])
    m = mvreml.Model(Y, X, random=[mvreml.Random(Z, US(2), name="fam")])
    a = m.with_fixed(X2, fixef_names=["mu", "snp"]).fit()
    b = mvreml.Model(Y, X2, fixef_names=["mu", "snp"], random=[mvreml.Random(Z, US(2), name="fam")]).fit()
    assert_same_fit(b, a)
    assert "y2:snp" in a.fixef.index
    # likelihood-ratio tests: refused across fixed models (REML), allowed across variance models
    with pytest.raises(mvreml.errors.ComparisonError, match="fixed effects differ"):
        mvreml.lrt(m.fit(), mvreml.Model(Y, np.column_stack([X, rng.normal(size=len(Y))]),
                                         random=[mvreml.Random(Z, US(2), name="fam")]).fit())
    small = mvreml.Model(Y, X, random=[mvreml.Random(Z, Diag(2), name="fam")]).fit()
    assert mvreml.lrt(small, m.fit()).df == 1


# ---------------------------------------------------------------- typed errors
def test_bad_arrays_get_typed_errors_naming_argument_and_sizes():
    Y, Z, lv = _small()
    n = len(Y)
    X = np.ones((n, 1))
    ok = [mvreml.Random(Z, US(2), name="fam")]
    with pytest.raises(ArgumentError, match=r"X has 119 rows but y has 120") as e:
        mvreml.Model(Y, X[:-1], random=ok)
    assert e.value.argument == "X"
    with pytest.raises(ArgumentError, match=r"Z of random term 'fam' has 100 rows but y has 120"):
        mvreml.Model(Y, X, random=[mvreml.Random(Z[:100], name="fam")])
    with pytest.raises(ArgumentError, match=r"covers 3 levels but the term has 2 trait\(s\)"):
        mvreml.Model(Y, X, random=[mvreml.Random(Z, US(3), name="fam")])
    with pytest.raises(ArgumentError, match=r"Kinv has shape \(4, 4\) but Z has 15 columns"):
        mvreml.Model(Y, X, random=[mvreml.Random(Z, Kinv=np.eye(4), name="fam")])
    with pytest.raises(ArgumentError, match="residual structure .* covers 3 traits but y has 2"):
        mvreml.Model(Y, X, random=ok, residual=mvreml.Residual(US(3)))
    with pytest.raises(ArgumentError, match="weights has 3 values but y has 120"):
        mvreml.Model(Y, X, random=ok, weights=[1, 2, 3])
    with pytest.raises(ArgumentError, match="X is a sequence of 3 matrices but y has 2 traits"):
        mvreml.Model(Y, [X, X, X], random=ok)
    Xbad = X.copy()
    Xbad[7, 0] = np.nan
    with pytest.raises(DataError, match="row 7"):
        mvreml.Model(Y, Xbad, random=ok)
    with pytest.raises(DataError, match="use NaN for a missing value"):
        mvreml.Model(np.where(np.isnan(Y), np.inf, Y), X, random=ok)
    # the formula route's checks of what can be estimated, through arrays too
    with pytest.raises(mvreml.errors.ModelError, match="is constant"):
        mvreml.Model(np.full(n, 3.0), X, random=[mvreml.Random(Z, name="fam")]).fit()
    with pytest.raises(mvreml.errors.ModelError, match="exact copies of each other"):
        mvreml.Model(np.column_stack([Y[:, 0], Y[:, 0]]), X, random=ok).fit()
    m = mvreml.Model(Y, X, random=ok)
    with pytest.raises(ArgumentError, match="theta has 2 values but the model has 6 parameters"):
        m.loglik([1.0, 2.0])
    with pytest.raises(ArgumentError, match="outside the parameter space"):
        m.loglik([1.0, 5.0, 1.0, 1.0, 0.0, 1.0])        # G not positive definite
    with pytest.raises(ArgumentError, match="unknown parameters"):
        m.loglik({"nope": 1.0})


def test_K_not_symmetric_positive_definite_says_so():
    Y, Z, lv = _small()
    X = np.ones((len(Y), 1))
    q = Z.shape[1]
    K = np.eye(q)
    K[0, 1] = 0.5
    with pytest.raises(RelmatError, match="not symmetric"):
        mvreml.Model(Y, X, random=[mvreml.Random(Z, K=K, name="fam")])
    K = np.eye(q)
    K[0, 1] = K[1, 0] = 1.5                            # symmetric, indefinite
    with pytest.raises(RelmatError, match="not positive definite"):
        mvreml.Model(Y, X, random=[mvreml.Random(Z, K=K, name="fam")])
    with pytest.raises(RelmatError, match="not positive definite"):
        mvreml.Model(Y, X, random=[mvreml.Random(Z, Kinv=sp.csr_matrix(K), name="fam")])


def test_public_names_exported():
    for name in ("Model", "Random", "Residual", "Evaluation", "Solution", "structures"):
        assert name in mvreml.__all__
        assert getattr(mvreml, name) is not None
    assert mvreml.structures.FA(4, k=2).n_params == 11


def test_both_routes_build_the_same_design(gryphon):
    """One engine: the formula route's Design and the array route's hold the same arrays."""
    from mvreml.design import build_design
    from mvreml.formula import parse_fixed, parse_random, parse_residual

    g, ped, Za = gryphon
    fspec = parse_fixed("cbind(bwt, tarsus) ~ trait")
    rspec = parse_random("~ us(trait):vm(animal, ped)", fspec.response)
    resid = parse_residual("~ units:us(trait)", fspec.response)
    ref = _quiet(build_design, g, fspec, rspec, resid, relmat={"ped": ped})
    m = _quiet(mvreml.Model, g[["bwt", "tarsus"]].to_numpy(), np.ones((len(g), 1)), traits=["bwt", "tarsus"],
               random=[mvreml.Random(Za, US(2), K=ped, name="animal")])
    d = m.design
    for name in ("y", "obs_unit", "obs_trait", "unit_start", "weights", "patterns", "unit_pattern", "unit_rows"):
        np.testing.assert_array_equal(getattr(d, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(d.X.toarray(), ref.X.toarray())
    a, b = d.random[0], ref.random[0]
    assert list(a.levels) == list(b.levels) and a.t == b.t and a.logdet_k == b.logdet_k
    assert (a.kinv != b.kinv).nnz == 0
    za = sp.csr_matrix((a.obs_vals, (a.obs_rows, a.obs_cols)), shape=(d.n_obs, a.q * a.t))
    zb = sp.csr_matrix((np.ones(len(b.obs_rows)) if b.obs_vals is None else b.obs_vals,
                        (b.obs_rows, b.obs_cols)), shape=(ref.n_obs, b.q * b.t))
    assert (za != zb).nnz == 0


def test_readme_embedding_example_runs():
    """The README's Embedding example, as written, runs and its claims hold."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Embedding", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    ns: dict = {}
    exec(compile(code, "README.md (Embedding)", "exec"), ns)
    assert ns["model"].loglik(ns["theta"]) == pytest.approx(ns["res"].loglik, rel=1e-12)
    assert ns["sol"].blups["family"].shape == (40, 2)
    assert "height:snp" in ns["gwas"].fixef.index
    assert ns["scan"].shape[0] == 200 * 2 and ns["scan"]["std_error"].gt(0).all()


def test_residual_groups_match_formula_dsum():
    """Residual(groups=) is the formula's dsum(~ units | site): one R0 per group."""
    rng = np.random.default_rng(21)
    sites, n_gen = ["S1", "S2", "S3"], 40
    site = np.repeat(sites, 2 * n_gen)
    gen = np.tile([f"g{i:02d}" for i in range(n_gen)], 2 * len(sites))
    ug = rng.normal(size=n_gen)
    y = (np.repeat([10.0, 12.0, 9.0], 2 * n_gen) + np.tile(ug, 2 * len(sites))
         + rng.normal(size=len(site)) * np.repeat([0.5, 1.0, 2.0], 2 * n_gen))
    df = pd.DataFrame({"y": y, "site": site, "gen": gen})
    ref = mvreml.fit("y ~ site", random="~ gen", residual="~ dsum(~ units | site)", data=df)
    Zg, glv = incidence(gen)
    X = np.column_stack([np.ones(len(y)), site == "S2", site == "S3"]).astype(float)
    m = mvreml.Model(y, X, traits=["y"], fixef_names=["(Intercept)", "site[T.S2]", "site[T.S3]"],
                     random=[mvreml.Random(Zg, name="gen", levels=glv)],
                     residual=mvreml.Residual(Idv(1), groups=site, name="site"))
    res = m.fit()
    assert list(res.varcomp.index) == ["gen", "site_S1!R", "site_S2!R", "site_S3!R"]
    assert_same_fit(ref, res)
    with pytest.raises(ArgumentError, match="groups has 5 labels but y has 240"):
        mvreml.Model(y, X, random=[mvreml.Random(Zg)], residual=mvreml.Residual(groups=site[:5]))


def test_weights_match_formula_weights():
    Y, Z, lv = _small(seed=6, t=1)
    rng = np.random.default_rng(2)
    w = rng.uniform(0.5, 3.0, len(Y))
    df = pd.DataFrame({"y": Y[:, 0], "fam": np.asarray(lv)[Z.indices], "w": w})
    ref = _quiet(mvreml.fit, "y ~ 1", random="~ fam", data=df, weights="w")
    m = _quiet(mvreml.Model, Y, np.ones((len(Y), 1)), traits=["y"], fixef_names=["(Intercept)"],
               random=[mvreml.Random(Z, name="fam", levels=lv)], weights=w)
    assert_same_fit(ref, _quiet(m.fit))
    with pytest.raises(DataError, match="positive and finite"):
        mvreml.Model(Y, np.ones((len(Y), 1)), random=[mvreml.Random(Z)], weights=-w)


def test_no_random_term_and_no_fixed_effect():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 2)) + 3
    ref = mvreml.fit("cbind(a, b) ~ trait", residual="~ units:us(trait)", data=pd.DataFrame(y, columns=["a", "b"]))
    res = mvreml.Model(y, np.ones((50, 1)), traits=["a", "b"]).fit()
    assert res.loglik == pytest.approx(ref.loglik, rel=1e-12)
    none = mvreml.Model(y[:, 0] - 3, None).fit()      # X = None: no fixed effect, N - p = N contrasts
    assert none.fixef.shape[0] == 0 and none.converged
    assert none.varcomp.loc["units", "estimate"] == pytest.approx(np.mean((y[:, 0] - 3) ** 2), rel=1e-6)
