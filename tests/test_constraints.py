"""constraints= (asreml's vcc / vcm) and fix= by component label, through mvreml.fit and
mvreml.Model.fit: a constrained fit equals the model written with one shared parameter,
is stationary in the reduced parameters of the dense log L, has the reduced AI's standard
errors, and counts its parameters once in a likelihood-ratio test."""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.errors import ArgumentError, ModelError, StartingValueError
from mvreml.structures import Corh, Idv
from dense import dense_loglik, dense_score_ai
from test_model import assert_same_fit, incidence

FIXED = "yield ~ 1 + gen + loc + loc:gen"
RANDOM = "~ at(loc):rowf + at(loc):colf"
DSUM = "~ dsum(~ units | loc)"


@pytest.fixture(scope="module")
def cucumber(data_dir):
    df = pd.read_csv(data_dir / "agridat" / "bridges.cucumber.csv")
    df["rowf"] = df["row"].astype(str)
    df["colf"] = df["col"].astype(str)
    return df


def _fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mvreml.errors.BoundaryWarning)
        return mvreml.fit(*args, **kw)


R_LABELS = ["loc_Clemson!R", "loc_Tifton!R"]


def test_dsum_residuals_constrained_equal_are_one_pooled_residual(cucumber):
    free = _fit(FIXED, RANDOM, DSUM, data=cucumber)
    assert free.varcomp.loc[R_LABELS[0], "estimate"] > 2 * free.varcomp.loc[R_LABELS[1], "estimate"]
    tied = _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[R_LABELS])
    pooled = _fit(FIXED, RANDOM, data=cucumber)          # one residual for both locations
    assert tied.converged
    assert tied.loglik == pytest.approx(pooled.loglik, rel=1e-10)
    assert tied.loglik < free.loglik - 0.1
    vc, vp = tied.varcomp, pooled.varcomp
    for lab in R_LABELS:
        assert vc.loc[lab, "estimate"] == pytest.approx(vp.loc["units", "estimate"], rel=1e-6)
        # the standard error of the shared value, from the reduced AI matrix
        assert vc.loc[lab, "std_error"] == pytest.approx(vp.loc["units", "std_error"], rel=1e-5)
    # asreml's codes: the parameter set from another is "C", the group's first keeps its own
    assert list(vc.loc[R_LABELS, "bound"]) == ["P", "C"]
    assert vc.loc[R_LABELS[0], "estimate"] == vc.loc[R_LABELS[1], "estimate"]
    for lab in vp.index[:-1]:
        assert vc.loc[lab, "estimate"] == pytest.approx(vp.loc[lab, "estimate"], rel=1e-6)
        assert vc.loc[lab, "bound"] == "P"
    assert tied.model["n_varparams"] == free.model["n_varparams"] - 1 == 5
    assert any("constrained (bound 'C'): loc_Clemson!R = loc_Tifton!R" in m for m in tied.diagnostics)
    assert "C constrained" in tied.summary().text
    # the likelihood-ratio test of the constraint has one degree of freedom
    test = mvreml.lrt(tied, free)
    assert test.df == 1
    assert test.statistic == pytest.approx(2 * (free.loglik - tied.loglik), rel=1e-9)


def test_forms_of_constraints_agree_and_terms_tie_position_by_position(cucumber):
    tied = _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[R_LABELS])
    by_term = _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[["loc_Clemson", "loc_Tifton"]])
    M = np.eye(6)[:, :5]
    M[5, 4] = 1.0                                         # theta_6 = phi_5 = theta_5
    by_matrix = _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=M)
    for other in (by_term, by_matrix):
        assert_same_fit(tied, other, tol=1e-10)
    # at(loc):rowf equal at both locations == rowf:loc (one variance for both)
    both = _fit(FIXED, RANDOM, DSUM, data=cucumber,
                constraints=[["at(loc, Clemson):rowf", "at(loc, Tifton):rowf"], R_LABELS])
    ref = _fit(FIXED, "~ rowf:loc + at(loc):colf", data=cucumber)
    assert both.loglik == pytest.approx(ref.loglik, rel=1e-10)
    assert both.varcomp.loc["at(loc, Tifton):rowf", "estimate"] == pytest.approx(
        ref.varcomp.loc["rowf:loc", "estimate"], rel=1e-6)


def test_ratio_constraint_is_stationary_in_the_reduced_parameters_of_the_dense_loglik(cucumber):
    """theta_Tifton = 0.5 theta_Clemson: log L and the projected score M' s of the dense
    computation at the reported theta; the SEs are those of M (M' AI M)^-1 M'."""
    res = _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[{R_LABELS[0]: 1.0, R_LABELS[1]: 0.5}])
    theta = res.varcomp["estimate"].to_numpy()
    assert theta[5] == pytest.approx(0.5 * theta[4], rel=1e-14)
    model, _ = res._fitted
    design, blocks = model.design, model.blocks
    mats = [b.structure.matrix(theta[b.slice]) for b in blocks]
    assert res.loglik == pytest.approx(dense_loglik(design, mats), rel=1e-9)
    s, ai = dense_score_ai(design, blocks, theta)
    M = np.eye(6)[:, :5]
    M[5, 4] = 0.5
    g = M.T @ s
    assert np.abs(g).max() < 1e-3 * np.abs(s).max()       # stationary along phi ...
    assert abs(s[4]) > 1e-3                               # ... not along theta_5 alone
    cov = M @ np.linalg.inv(M.T @ ai @ M) @ M.T
    np.testing.assert_allclose(res.varcomp["std_error"], np.sqrt(np.diag(cov)), rtol=2e-3)
    assert res.varcomp.loc[R_LABELS[1], "std_error"] == pytest.approx(
        0.5 * res.varcomp.loc[R_LABELS[0], "std_error"], rel=1e-10)


def test_array_model_constraints_and_label_fix_match_the_formula(cucumber):
    """Model.fit(constraints=) on residual groups == mvreml.fit(constraints=)."""
    rng = np.random.default_rng(3)
    site = np.repeat(["S1", "S2", "S3"], 60)
    gen = np.tile([f"g{i:02d}" for i in range(30)], 6)
    y = 5 + np.tile(rng.normal(size=30), 6) + rng.normal(size=180) * np.repeat([1.0, 1.1, 2.0], 60)
    df = pd.DataFrame({"y": y, "site": site, "gen": gen})
    Zg, glv = incidence(gen)
    X = np.column_stack([np.ones(180), site == "S2", site == "S3"]).astype(float)
    m = mvreml.Model(y, X, traits=["y"], fixef_names=["(Intercept)", "site[T.S2]", "site[T.S3]"],
                     random=[mvreml.Random(Zg, name="gen", levels=glv)],
                     residual=mvreml.Residual(Idv(1), groups=site, name="site"))
    con = [["site_S1!R", "site_S2!R"]]
    res = m.fit(constraints=con)
    ref = _fit("y ~ site", random="~ gen", residual="~ dsum(~ units | site)", data=df, constraints=con)
    assert_same_fit(ref, res)
    assert list(res.varcomp["bound"]) == ["P", "P", "C", "P"]
    # fix= by label in both routes: one residual section held, the rest estimated
    held_m = m.fit(init={"site_S3!R": 4.0}, fix=["site_S3!R"])
    held_f = _fit("y ~ site", random="~ gen", residual="~ dsum(~ units | site)", data=df,
                  init={"site_S3": 4.0}, fix=["site_S3!R"])
    assert_same_fit(held_f, held_m)
    assert held_f.varcomp.loc["site_S3!R", "estimate"] == 4.0
    assert list(held_f.varcomp["bound"]) == ["P", "P", "P", "F"]
    # a constraint group held in part is refused, a whole one is held
    with pytest.raises(ArgumentError, match="fix= holds part of the constraint group"):
        m.fit(init={"site_S1!R": 1.0}, fix=["site_S1!R"], constraints=con)
    both = m.fit(init={"site_S1!R": 1.0, "site_S2!R": 1.0}, fix=["site_S1!R", "site_S2!R"], constraints=con)
    assert list(both.varcomp["bound"][1:3]) == ["F", "F"]
    assert list(both.varcomp["estimate"][1:3]) == [1.0, 1.0]
    with pytest.raises(ArgumentError, match="component label"):
        m.fit(fix=3)                                   # the formula route's check of fix=
    # held values that break the constraint are refused, not moved to their mean
    with pytest.raises(ArgumentError, match="break"):
        m.fit(init={"site_S1!R": 1.0, "site_S2!R": 2.0}, fix=["site_S1!R", "site_S2!R"], constraints=con)


def test_fix_by_label_in_fit_and_errors(cucumber):
    init = {"at(loc, Clemson):rowf": 30.0}
    held = _fit(FIXED, RANDOM, DSUM, data=cucumber, init=init, fix=["at(loc, Clemson):rowf"])
    assert held.varcomp.loc["at(loc, Clemson):rowf", "estimate"] == 30.0
    assert held.varcomp.loc["at(loc, Clemson):rowf", "bound"] == "F"
    assert np.isnan(held.varcomp.loc["at(loc, Clemson):rowf", "std_error"])
    assert held.model["n_varparams"] == 5
    with pytest.raises(StartingValueError, match="init= gives no value"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, fix=["at(loc, Tifton):rowf"])
    with pytest.raises(ModelError, match="not in the model"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, init=init, fix=["at(loc, Nowhere):rowf"])
    with pytest.raises(ArgumentError, match="neither a variance parameter"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[["loc_Clemson!R", "loc_Nowhere!R"]])
    with pytest.raises(ArgumentError, match="positive number"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[{R_LABELS[0]: 1.0, R_LABELS[1]: -1.0}])
    with pytest.raises(ArgumentError, match="in two constraint groups"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=[R_LABELS, [R_LABELS[1], "at(loc, Tifton):colf"]])
    with pytest.raises(ArgumentError, match="exactly one free value"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=np.ones((6, 2)))
    with pytest.raises(ArgumentError, match="one row per parameter"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints=np.eye(5))
    with pytest.raises(ArgumentError, match="component label"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, init=init, fix=3)
    with pytest.raises(ArgumentError, match="list of groups"):
        _fit(FIXED, RANDOM, DSUM, data=cucumber, constraints="loc_Clemson!R")


def test_us_elements_cannot_be_tied_and_correlations_only_equated():
    rng = np.random.default_rng(5)
    n, q = 150, 20
    grp = rng.integers(0, q, n)
    Z, lv = incidence(grp.astype(str))
    Y = rng.normal(size=(n, 3)) + rng.normal(size=(q, 3))[grp]
    m = mvreml.Model(Y, np.ones((n, 1)), traits=["a", "b", "c"],
                     random=[mvreml.Random(Z, mvreml.structures.US(3), name="fam", levels=lv)])
    with pytest.raises(ArgumentError, match="cannot be tied one by one"):
        m.fit(constraints=[["fam:trait!a:a", "fam:trait!b:b"]])
    mc = mvreml.Model(Y, np.ones((n, 1)), traits=["a", "b", "c"],
                      random=[mvreml.Random(Z, Corh(3), name="fam", levels=lv)])
    names = mc.parameter_names
    with pytest.raises(ArgumentError, match="correlations can only be set equal"):
        mc.fit(constraints=[[names[0], names[1]]])
    with pytest.raises(ArgumentError, match="different numbers of parameters"):
        mvreml.Model(Y, np.ones((n, 1)), traits=["a", "b", "c"],
                     random=[mvreml.Random(Z, Corh(3), name="fam", levels=lv),
                             mvreml.Random(Z, Idv(3), name="fam2", levels=lv)]).fit(constraints=[["fam", "fam2"]])
    # corh variances tied equal == corv (common variance and correlation)
    tied = mc.fit(constraints=[names[1:4]])
    corv = mvreml.Model(Y, np.ones((n, 1)), traits=["a", "b", "c"],
                        random=[mvreml.Random(Z, mvreml.structures.Corv(3), name="fam", levels=lv)]).fit()
    assert tied.loglik == pytest.approx(corv.loglik, rel=1e-10)
    np.testing.assert_allclose(tied.varcomp["estimate"].to_numpy()[[0, 1]], corv.varcomp["estimate"].to_numpy()[:2],
                               rtol=1e-6)


def test_correlation_held_near_one_is_kept_exactly_not_clipped():
    """Issue 15 / 18: a correlation of 0.99999 (held by its label, or given in init= as a
    matrix) is used and reported as 0.99999, not as 0.999 without a word."""
    rng = np.random.default_rng(8)
    n, q = 150, 25
    grp = rng.integers(0, q, n)
    Z, lv = incidence(grp.astype(str))
    Y = rng.normal(size=(n, 2)) + rng.normal(size=(q, 1))[grp] * [1.0, 1.0]
    m = mvreml.Model(Y, np.ones((n, 1)), traits=["a", "b"],
                     random=[mvreml.Random(Z, Corh(2), name="fam", levels=lv)])
    cor = m.parameter_names[0]
    res = m.fit(init={cor: 0.99999}, fix=[cor])
    assert res.varcomp.loc[cor, "estimate"] == 0.99999
    assert res.varcomp.loc[cor, "bound"] == "F"
    G = np.array([[1.0, 0.99999], [0.99999, 1.0]])
    df = pd.DataFrame({"a": Y[:, 0], "b": Y[:, 1], "fam": grp.astype(str)})
    f = _fit("cbind(a, b) ~ trait", random="~ corh(trait):fam", data=df, init={"fam": G}, fix=["fam"])
    assert f.varcomp.iloc[0]["estimate"] == 0.99999
    # a correlation of exactly 1 is not a starting value: said, not clipped to 0.999
    with pytest.raises(StartingValueError):
        m.fit(init={cor: 1.0}, fix=[cor])


def test_correlation_estimated_at_one_is_held_and_said():
    """A corh correlation whose estimate goes to +1 is held at the bound and reported "B"
    with a BoundaryWarning naming it (not moved to 0.999 in silence)."""
    rng = np.random.default_rng(8)
    n, q = 400, 40
    grp = rng.integers(0, q, n)
    Y = rng.normal(size=(n, 2)) + 2 * rng.normal(size=(q, 1))[grp] * [1.0, 1.0]
    df = pd.DataFrame({"a": Y[:, 0], "b": Y[:, 1], "fam": grp.astype(str)})
    with pytest.warns(mvreml.errors.BoundaryWarning, match="fam:trait!cor"):
        f = mvreml.fit("cbind(a, b) ~ trait", random="~ corh(trait):fam", data=df)
    assert f.varcomp.loc["fam:trait!cor", "bound"] == "B"
    assert 1 - 1e-6 < f.varcomp.loc["fam:trait!cor", "estimate"] < 1
