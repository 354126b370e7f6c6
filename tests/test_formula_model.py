"""The formula route through mvreml.Model (issue 15): one path, refits of formula fits, and the
fixed effects' covariance computed on first access."""
import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.errors import ArgumentError, ModelError, StartingValueError
from dense import dense_V
from test_model import assert_same_fit
from test_reml import SEED_FIXED, SEED_MODEL, seed_trial

UNI = dict(fixed="bwt ~ 1 + sex", random="~ vm(animal, ped) + byear")
BI = dict(fixed="cbind(bwt, tarsus) ~ trait + at(trait):sex", random="~ us(trait):vm(animal, ped)",
          residual="~ units:us(trait)")


def _quiet(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kw)


def _noisy(values, seed, scale):
    rng = np.random.default_rng(seed)
    return np.where(np.isnan(values), np.nan, values + scale * rng.normal(size=values.shape))


def _assert_components(a, b, tol=1e-10):
    """log L and every component (estimate, standard error) to tol, and the same fixed effects."""
    assert_same_fit(a, b, tol=tol)
    pd_a, pd_b = a.components, b.components
    np.testing.assert_allclose(pd_b["estimate"], pd_a["estimate"], rtol=tol, atol=tol)


@pytest.mark.parametrize("spec", [UNI, BI], ids=["univariate", "bivariate"])
def test_formula_model_reproduces_mvreml_fit_on_gryphon(gryphon_data, spec):
    g, ped = gryphon_data
    ref = _quiet(mvreml.fit, data=g, relmat={"ped": ped}, **spec)
    m = _quiet(mvreml.Model.from_formula, data=g, relmat={"ped": ped}, **spec)
    res = _quiet(m.fit)
    _assert_components(ref, res)
    assert res.model["fixed"] == ref.model["fixed"] and res.model["random"] == ref.model["random"]
    assert res.mixed_model is m
    # the model mvreml.fit built is the Result's: its design is the one a new model builds
    built = ref.mixed_model
    assert isinstance(built, mvreml.Model) and built.parameter_names == m.parameter_names
    assert built.design.n_obs == m.design.n_obs and built.design.fixef_names == m.design.fixef_names
    # evaluations through the Model agree with the Result's log L at its estimates
    assert built.loglik(ref.varcomp["estimate"].to_numpy()) == pytest.approx(ref.loglik, rel=1e-12)


def test_formula_model_reproduces_mvreml_fit_on_the_seed_trial():
    data = seed_trial()
    ref = _quiet(mvreml.fit, SEED_FIXED, data=data, **SEED_MODEL)
    model = {k: v for k, v in SEED_MODEL.items() if k in ("random", "residual")}
    m = mvreml.Model.from_formula(SEED_FIXED, data=data, **model)
    res = _quiet(m.fit, **{k: v for k, v in SEED_MODEL.items() if k not in ("random", "residual")})
    _assert_components(ref, res)
    assert "B" in set(res.varcomp["bound"])


def test_refit_of_a_formula_fit_equals_a_fresh_fit(gryphon_data):
    g, ped = gryphon_data
    res = _quiet(mvreml.fit, data=g, relmat={"ped": ped}, **BI)
    y2 = _noisy(g[["bwt", "tarsus"]].to_numpy(float), 1, 1.0)
    fresh = _quiet(mvreml.fit, data=g.assign(bwt=y2[:, 0], tarsus=y2[:, 1]), relmat={"ped": ped}, **BI)
    refit = _quiet(res.refit, y2)
    # same pattern of NaN: the design's pattern and analysis are reused; the residuals after the
    # fixed effects (starting values) come from a Cholesky factor of X'X instead of LSQR
    assert refit.mixed_model._reml.pattern is res.mixed_model._reml.pattern
    assert refit.history["loglik"].iloc[0] == pytest.approx(fresh.history["loglik"].iloc[0], rel=1e-12)
    _assert_components(fresh, refit, tol=1e-9)
    assert refit.model["data_signature"] == fresh.model["data_signature"]
    # the responses as a data frame with the response columns
    frame = g[["bwt", "tarsus"]].assign(bwt=y2[:, 0], tarsus=y2[:, 1])
    _assert_components(fresh, _quiet(res.refit, frame), tol=1e-9)
    # another pattern of NaN: the design is built afresh from the data, exactly the fresh fit
    y3 = y2.copy()
    y3[:40, 1] = np.nan
    y3[40:45, :] = np.nan
    fresh3 = _quiet(mvreml.fit, data=g.assign(bwt=y3[:, 0], tarsus=y3[:, 1]), relmat={"ped": ped}, **BI)
    refit3 = _quiet(res.mixed_model.refit, y3)
    assert refit3.mixed_model._reml.pattern is not res.mixed_model._reml.pattern
    _assert_components(fresh3, refit3)
    assert refit3.n_obs == fresh3.n_obs


def test_result_refit_keeps_the_fit_options(gryphon_data):
    g, ped = gryphon_data
    init = {"byear": 0.8, "units": 4.0}
    res = _quiet(mvreml.fit, data=g, relmat={"ped": ped}, init=init, fix="byear", **UNI)
    assert res.varcomp.loc["byear", "bound"] == "F"
    y2 = _noisy(g["bwt"].to_numpy(float), 2, 0.5)
    fresh = _quiet(mvreml.fit, data=g.assign(bwt=y2), relmat={"ped": ped}, init=init, fix="byear", **UNI)
    refit = _quiet(res.refit, y2)
    assert refit.varcomp.loc["byear", "bound"] == "F"
    assert refit.varcomp.loc["byear", "estimate"] == 0.8
    _assert_components(fresh, refit, tol=1e-9)
    # options given to refit win
    free = _quiet(res.refit, y2, fix=None, init=None)
    assert free.varcomp.loc["byear", "bound"] != "F"


def test_with_fixed_formula_and_scan_of_a_formula_model(gryphon_data):
    g, ped = gryphon_data
    rng = np.random.default_rng(3)
    data = g.assign(snp=rng.integers(0, 3, len(g)).astype(float))
    m = _quiet(mvreml.Model.from_formula, data=data, relmat={"ped": ped}, **UNI)
    res = _quiet(m.fit)
    bigger = _quiet(m.with_fixed, "bwt ~ 1 + sex + snp")
    fresh = _quiet(mvreml.fit, "bwt ~ 1 + sex + snp", random=UNI["random"], data=data, relmat={"ped": ped})
    _assert_components(fresh, _quiet(bigger.fit))
    assert bigger.design.p == m.design.p + 1
    # a scan at the estimates: the snp column's test, as the fit with theta held gives it
    scan = m.scan(data[["snp"]].to_numpy(), names=["snp"])
    theta = res.varcomp["estimate"].to_numpy()
    held = _quiet(bigger.fit, init=theta, fix=bigger.terms)
    assert scan["estimate"].iloc[0] == pytest.approx(held.fixef.loc["snp", "estimate"], rel=1e-9)
    assert scan["std_error"].iloc[0] == pytest.approx(held.fixef.loc["snp", "std_error"], rel=1e-8)
    with pytest.raises(ArgumentError, match="fixed formula"):
        m.with_fixed(np.ones((len(g), 1)))
    with pytest.raises(ArgumentError, match="responses"):
        m.with_fixed("tarsus ~ 1")


def test_pairwise_init_through_the_formula_model():
    data = seed_trial()
    random = "~ diag(trait):Block + us(trait):RIL"
    ref = _quiet(mvreml.fit, SEED_FIXED, random, data=data, init="pairwise")
    m = mvreml.Model.from_formula(SEED_FIXED, random, data=data)
    _assert_components(ref, _quiet(m.fit, init="pairwise"))
    with pytest.raises(StartingValueError, match="formulas"):
        mvreml.Model(data[["HD", "HT"]].to_numpy(), np.ones((len(data), 1))).fit(init="pairwise")


def test_fixef_vcov_on_first_access_equals_the_eager_and_the_dense(gryphon_data):
    g, ped = gryphon_data
    m = _quiet(mvreml.Model.from_formula, data=g, relmat={"ped": ped}, **BI)
    res = _quiet(m.fit)
    assert res.__dict__["_fixef_vcov_pending"] is not None          # not computed by the fit
    reml, theta = res._fitted
    eager = reml.fixed_vcov(theta=theta)       # what build_result computed before this change
    # the model moves on before anyone asks (an evaluation elsewhere): the same numbers
    m.loglik(theta * 1.1)
    lazy = res.fixef_vcov
    assert res.__dict__["_fixef_vcov_pending"] is None
    np.testing.assert_allclose(lazy, eager, rtol=1e-10, atol=1e-14)
    assert res.fixef_vcov is lazy                                   # computed once
    # the independent dense computation: (X' V^-1 X)^-1
    d = m.design
    V = dense_V(d, reml.matrices(theta))
    X = d.X.toarray()
    np.testing.assert_allclose(lazy, np.linalg.inv(X.T @ np.linalg.solve(V, X)), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(lazy)), res.fixef["std_error"], rtol=1e-8)
    # the Wald table reads it; JSON and pickle carry the computed matrix, not the model
    other = copy.copy(res)
    other.fixef_vcov = eager
    pd.testing.assert_frame_equal(res.wald(), other.wald(), rtol=1e-9)
    res2 = _quiet(m.fit)
    back = pickle.loads(pickle.dumps(res2))
    np.testing.assert_allclose(back.fixef_vcov, lazy, rtol=1e-10, atol=1e-14)
    assert back.mixed_model is None
    with pytest.raises(ModelError, match="no model to refit"):
        back.refit(g[["bwt", "tarsus"]].to_numpy())
    res3 = _quiet(m.fit)
    js = mvreml.Result.from_json(res3.to_json())
    np.testing.assert_allclose(js.fixef_vcov, lazy, rtol=1e-10, atol=1e-14)
    assert _quiet(m.fit, fixef_vcov=False).fixef_vcov is None


def test_array_model_checkpoints_and_resumes(tmp_path):
    from test_model import _small

    Y, Z, _ = _small(seed=4, n=200, q=25)
    m = mvreml.Model(Y, np.ones((len(Y), 1)), random=[mvreml.Random(Z, mvreml.structures.US(2), name="fam")])
    full = m.fit()
    assert full.iterations > 2
    path = tmp_path / "fit.ckpt"
    part = _quiet(m.fit, maxiter=2, checkpoint=path)
    assert not part.converged and part.iterations == 2
    resumed = m.fit(resume=path)
    assert resumed.iterations == full.iterations
    _assert_components(full, resumed)


def test_chained_warm_refits_start_from_the_previous_refit():
    from test_model import _small

    Y, Z, _ = _small(seed=6, n=200, q=25)
    base = mvreml.Model(Y, np.ones((len(Y), 1)), random=[mvreml.Random(Z, mvreml.structures.US(2), name="fam")])
    first = base.fit()
    r1 = base.refit(_noisy(Y, 1, 0.5))
    Y2 = _noisy(Y, 2, 0.5)
    r2 = r1.refit(Y2, warm=True)       # r1's model: its last fit is r1
    start = base.with_response(Y2).loglik(r1.varcomp["estimate"].to_numpy())
    assert r2.history["loglik"].iloc[0] == pytest.approx(start, rel=1e-12)
    assert start != pytest.approx(base.with_response(Y2).loglik(first.varcomp["estimate"].to_numpy()), rel=1e-9)
    # the fresh fit's optimum to the convergence tolerance
    fresh = base.with_response(Y2).fit()
    assert r2.converged and r2.loglik == pytest.approx(fresh.loglik, rel=1e-9)
    np.testing.assert_allclose(r2.varcomp["estimate"], fresh.varcomp["estimate"], rtol=1e-3, atol=1e-6)
