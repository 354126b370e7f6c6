"""Result: tables, vpredict / heritability / correlation with delta-method SEs, Wald, predict,
lrt, summary and JSON, on Results built by hand from gryphon's published ASReml estimates."""
import json
import math
import warnings
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mvreml
from mvreml.errors import (ComparisonError, ConvergenceWarning, ExpressionError, ModelError,
                           MvremlError, TermError)
from mvreml.results import Result, lrt
from mvreml.wald import term_factors

LOG2PI = math.log(2 * math.pi)
PAIRS = (("bwt", "bwt"), ("tarsus", "bwt"), ("tarsus", "tarsus"))


def build(traits, G, vcov, *, loglik=-2031.0, n_obs=854, fixef=None, fixef_vcov=None, fixed_terms=None,
          structures=None, bound=None, **overrides):
    """A Result from term -> list of component values (us order); varcomp rows are the components."""
    rows, labels = [], []
    for term, values in G.items():
        pairs = [(traits[0], traits[0])] if len(traits) == 1 else PAIRS
        for (a, b), v in zip(pairs, values):
            rows.append((term, a, b, v))
            labels.append(term if len(traits) == 1 else f"{term}:trait!{a}:{b}")
    comp = pd.DataFrame(rows, columns=["term", "trait_1", "trait_2", "estimate"])
    se = np.sqrt(np.diag(vcov))
    varcomp = pd.DataFrame({"term": comp["term"].to_numpy(), "estimate": comp["estimate"].to_numpy(),
                            "std_error": se, "z_ratio": comp["estimate"].to_numpy() / se,
                            "bound": bound or ["P" if a == b else "U" for a, b in zip(comp.trait_1, comp.trait_2)],
                            "kind": ["variance" if a == b else "covariance" for a, b in zip(comp.trait_1, comp.trait_2)]},
                           index=pd.Index(labels, name="component"))
    if fixef is None:
        fixef = pd.DataFrame({"estimate": [7.6], "std_error": [0.1]}, index=pd.Index(["(Intercept)"], name="effect"))
        fixef_vcov, fixed_terms = np.array([[0.01]]), {"(Intercept)": [0]}
    kw = dict(traits=traits, loglik=loglik, n_obs=n_obs, rank_x=len(fixef), n_units=854, n_dropped=230,
              converged=True, reason="log-likelihood change below 1e-8", iterations=6,
              history=pd.DataFrame({"iteration": [0, 1], "loglik": [loglik - 3.0, loglik], "change": [np.nan, 3.0],
                                    "step": ["start", "AI"], "seconds": [0.05, 0.01]}),
              varcomp=varcomp, components=comp, components_vcov=vcov,
              structures=structures or {t: "us" if len(traits) > 1 else "idv" for t in G},
              term_traits={t: list(traits) for t in G}, fixef=fixef, fixef_vcov=fixef_vcov,
              fixed_terms=fixed_terms,
              blups={"animal": pd.DataFrame({traits[0]: [0.25, -0.5], f"pev_{traits[0]}": [1.5, 1.25]},
                                            index=pd.Index([1097, 1098], name="animal"))},
              diagnostics=["2 animals in the pedigree have no records"],
              model=dict(fixed=" + ".join(traits) + " ~ 1", random="~ vm(animal, ped)", residual="~ idv(units)",
                         n_varparams=len(comp), data_signature="gryphon-854", n_fixed_params=len(fixef)))
    kw.update(overrides)
    return Result(**kw)


def model1(**kw):
    """Gryphon model 1: bwt ~ 1 + vm(animal); vcov covariance chosen so that SE(h2) is ASReml's 0.07650881."""
    A, R, sA, sR = 3.395398, 3.828602, 0.6349915, 0.5185919
    S = A + R
    gA, gR = R / S ** 2, -A / S ** 2
    c = (0.07650881 ** 2 - gA ** 2 * sA ** 2 - gR ** 2 * sR ** 2) / (2 * gA * gR)
    kw.setdefault("loglik", -1247.183 - 0.5 * 853 * LOG2PI)   # ASReml's logL -1247.183 in lme4 convention
    return build(["bwt"], {"animal": [A], "units": [R]}, np.array([[sA ** 2, c], [c, sR ** 2]]), **kw)


BIV_X = np.array([3.368397, 2.459809, 12.345792, 3.849916, 3.313282, 17.646432])
BIV_SE = np.array([0.6348307, 1.0732644, 3.0744285, 0.5200101, 0.9129234, 2.6670380])


def biv_vcov():
    """A PD sampling covariance of the 6 bivariate components reproducing ASReml's SEs of r_A, r_res,
    h2_bwt and h2_tarsus: within-matrix correlations equal (solved), same-trait animal/residual
    variance correlations solved, other cross-matrix correlations set to -0.6 / -0.2."""
    x, s = BIV_X, BIV_SE
    P = np.eye(6)
    for block, target in (([0, 1, 2], 0.1299759), ([3, 4, 5], 0.08607104)):
        v1, c, v2 = x[block]
        r = c / math.sqrt(v1 * v2)
        g = np.array([-r / (2 * v1), 1 / math.sqrt(v1 * v2), -r / (2 * v2)]) * s[block]
        rho = (target ** 2 - g @ g) / (g.sum() ** 2 - g @ g)
        P[np.ix_(block, block)] = rho
    for i, j, target in ((0, 3, 0.07671533), (2, 5, 0.09305863)):
        S = x[i] + x[j]
        gi, gj = x[j] / S ** 2 * s[i], -x[i] / S ** 2 * s[j]
        P[i, j] = (target ** 2 - gi ** 2 - gj ** 2) / (2 * gi * gj)
    for i in range(3):
        for j in range(3):
            if i != j:
                P[i, 3 + j] = -0.6
    P[1, 4] = -0.2
    P = np.triu(P) + np.triu(P, 1).T
    np.fill_diagonal(P, 1.0)
    V = P * np.outer(s, s)
    assert np.linalg.eigvalsh(V).min() > 0
    return V


def bivariate(**kw):
    kw.setdefault("loglik", -2679.741 - 0.5 * 1535 * LOG2PI)
    G = {"animal": list(BIV_X[:3]), "units": list(BIV_X[3:])}
    return build(["bwt", "tarsus"], G, biv_vcov(), n_obs=1537,
                 fixef=pd.DataFrame({"estimate": [7.6, 20.5], "std_error": [0.1, 0.2]},
                                    index=pd.Index(["trait_bwt", "trait_tarsus"], name="effect")),
                 fixef_vcov=np.array([[0.01, 0.005], [0.005, 0.04]]), fixed_terms={"trait": [0, 1]}, **kw)


def fd_se(f, x, V, rel=1e-6):
    g = np.zeros(x.size)
    for i in range(x.size):
        h = rel * abs(x[i])
        e = np.zeros(x.size)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return math.sqrt(g @ V @ g)


# ---------------------------------------------------------------------- functions of components
def test_model1_heritability_matches_asreml():
    res = model1()
    h = res.heritability("animal")
    assert list(h.index) == ["bwt"] and list(h.columns) == ["estimate", "std_error"]
    assert h.loc["bwt", "estimate"] == pytest.approx(0.4700163, abs=5e-8)
    assert h.loc["bwt", "std_error"] == pytest.approx(0.07650881, abs=1e-8)
    for expr in ("animal / (animal + units)", "V1/(V1+V2)"):
        s = res.vpredict(expr)
        assert isinstance(s, pd.Series) and s.name == expr
        assert s["estimate"] == pytest.approx(0.4700163, abs=5e-8)
        assert s["std_error"] == pytest.approx(0.07650881, abs=1e-8)


def test_bivariate_heritabilities_and_correlations_match_asreml():
    res = bivariate()
    h = res.heritability("animal")
    np.testing.assert_allclose(h["estimate"], [0.466646, 0.4116331], atol=5e-7)
    np.testing.assert_allclose(h["std_error"], [0.07671533, 0.09305863], atol=1e-8)
    for term, r, se in (("animal", 0.3814436, 0.1299759), ("units", 0.4019799, 0.08607104)):
        long = res.correlation(term, se=True)
        assert list(long.columns) == ["trait_1", "trait_2", "estimate", "std_error"]
        assert (long.trait_1[0], long.trait_2[0]) == ("tarsus", "bwt") and len(long) == 1
        assert long.estimate[0] == pytest.approx(r, abs=5e-7)
        assert long.std_error[0] == pytest.approx(se, abs=1e-8)
        mat = res.correlation(term)
        assert mat.loc["bwt", "tarsus"] == mat.loc["tarsus", "bwt"] == long.estimate[0]
        assert mat.loc["bwt", "bwt"] == 1.0


def test_delta_method_ses_agree_with_finite_differences():
    res = bivariate()
    V = res.components_vcov
    cases = {
        "r_A": ("animal[bwt,tarsus] / sqrt(animal[bwt,bwt] * animal[tarsus,tarsus])",
                lambda x: x[1] / math.sqrt(x[0] * x[2])),
        "h2_tarsus": ("animal[tarsus,tarsus]/(animal[tarsus,tarsus]+units[tarsus,tarsus])",
                      lambda x: x[2] / (x[2] + x[5])),
        "cv_P": ("sqrt(animal[bwt,bwt] + units[bwt,bwt]) / 7.6", lambda x: math.sqrt(x[0] + x[3]) / 7.6),
        "log_ratio": ("log(units[tarsus,tarsus] / animal[tarsus,tarsus]) * exp(V2 / 10)",
                      lambda x: math.log(x[5] / x[2]) * math.exp(x[1] / 10)),
    }
    out = res.vpredict({k: e for k, (e, _) in cases.items()})
    assert list(out.index) == list(cases) and list(out.columns) == ["estimate", "std_error"]
    for name, (_, f) in cases.items():
        assert out.loc[name, "estimate"] == pytest.approx(f(BIV_X), rel=1e-14)
        assert out.loc[name, "std_error"] == pytest.approx(fd_se(f, BIV_X, V), rel=1e-6)


def test_covariance_is_trait_labelled_and_symmetric():
    res = bivariate()
    G = res.covariance("animal")
    assert list(G.index) == list(G.columns) == ["bwt", "tarsus"]
    np.testing.assert_array_equal(G.to_numpy(), [[BIV_X[0], BIV_X[1]], [BIV_X[1], BIV_X[2]]])
    one = model1().covariance("units")
    assert one.shape == (1, 1) and one.loc["bwt", "bwt"] == 3.828602
    assert model1().correlation("animal", se=True).empty


def test_correlation_with_a_zero_variance_is_nan():
    res = build(["bwt", "tarsus"], {"animal": [0.0, 0.0, 2.0], "units": [1.0, 0.5, 1.0]}, np.eye(6) * 0.01)
    long = res.correlation("animal", se=True)
    assert math.isnan(long.estimate[0]) and math.isnan(long.std_error[0])
    assert res.correlation("units").loc["tarsus", "bwt"] == 0.5


def test_unknown_terms_and_components_raise_typed_errors():
    res = bivariate()
    for call in (lambda: res.covariance("Famly"), lambda: res.correlation("Famly"),
                 lambda: res.heritability("Famly"), lambda: res.blup("units")):
        with pytest.raises(TermError) as e:
            call()
        assert isinstance(e.value, KeyError) and isinstance(e.value, MvremlError)
        assert "known: animal" in str(e.value)
    with pytest.raises(TermError, match=r"^no term 'Famly' in this model; known: animal, units$"):
        res.covariance("Famly")
    with pytest.raises(ExpressionError, match=r"unknown component 'maternal'; available: animal\[bwt,bwt\]"):
        res.vpredict("maternal[bwt,bwt] / units[bwt,bwt]")
    with pytest.raises(ExpressionError, match="unknown component 'maternal'"):
        res.vpredict({"ok": "V1", "bad": "maternal"})


def test_blup_returns_a_copy():
    res = model1()
    b = res.blup("animal")
    assert list(b.columns) == ["bwt", "pev_bwt"] and list(b.index) == [1097, 1098]
    b.iloc[0, 0] = 99.0
    assert res.blup("animal").iloc[0, 0] == 0.25


# ---------------------------------------------------------------------- likelihood, AIC, BIC
def test_loglik_conventions_aic_bic():
    res = model1()
    assert res.loglik_asreml == pytest.approx(-1247.183, abs=1e-9)
    assert res.loglik == pytest.approx(-1247.183 - 853 / 2 * math.log(2 * math.pi), abs=1e-9)
    assert res.aic == pytest.approx(-2 * res.loglik + 4)
    assert res.bic == pytest.approx(-2 * res.loglik + 2 * math.log(853))


# ---------------------------------------------------------------------- Wald and predict
def model2(cov=-0.6 * 0.1718244 * 0.1619974, **kw):
    """Gryphon model 2 (bwt ~ 1 + sex): ASReml's fixed effects and SEs; their covariance chosen."""
    fixef = pd.DataFrame({"estimate": [6.058669, 2.206996], "std_error": [0.1718244, 0.1619974]},
                         index=pd.Index(["(Intercept)", "sex_2"], name="effect"))
    kw.setdefault("fixef_vcov", np.array([[0.1718244 ** 2, cov], [cov, 0.1619974 ** 2]]))
    kw.setdefault("fixed_terms", {"(Intercept)": [0], "sex": [1]})
    return build(["bwt"], {"animal": [3.060441], "units": [2.938412]}, np.diag([0.5243571, 0.4161473]) ** 2,
                 fixef=fixef, **kw)


def test_model2_sex_wald_f_matches_asreml():
    w = model2().wald()
    assert list(w.columns) == ["df", "denDF", "F_inc", "F_con", "p_inc", "p_con"]
    assert list(w.index) == ["(Intercept)", "sex"]
    assert round(w.loc["sex", "F_con"], 1) == 185.6
    assert w.loc["sex", "F_con"] == pytest.approx((2.206996 / 0.1619974) ** 2, rel=1e-12)
    assert w.loc["sex", "F_inc"] == pytest.approx(w.loc["sex", "F_con"], rel=1e-12)
    assert w.loc["sex", "denDF"] == 852 and w.loc["sex", "df"] == 1
    assert w.loc["sex", "p_con"] == pytest.approx(stats.f.sf(w.loc["sex", "F_con"], 1, 852), rel=1e-12)
    # intercept, sequential: GLS fit of X1 alone = (X1'V^-1y)' M11^-1 (X1'V^-1y), X'V^-1y = M b
    M = np.linalg.inv(model2().fixef_vcov)
    rhs = M @ np.array([6.058669, 2.206996])
    assert w.loc["(Intercept)", "F_inc"] == pytest.approx(rhs[0] ** 2 / M[0, 0], rel=1e-12)
    assert w.loc["(Intercept)", "F_con"] == pytest.approx(w.loc["(Intercept)", "F_inc"], rel=1e-12)


def _ss(M, b, keep, drop):
    """Independent SS of columns `keep` after `drop` via the sub-models' normal equations."""
    rhs = M @ b

    def fit(cols):
        cols = np.array(sorted(cols), dtype=int)
        return rhs[cols] @ np.linalg.solve(M[np.ix_(cols, cols)], rhs[cols]) if cols.size else 0.0
    return fit(list(keep) + list(drop)) - fit(drop)


def test_wald_incremental_and_conditional_with_marginality():
    rng = np.random.default_rng(7)
    terms = {"(Intercept)": [0], "A": [1, 2], "x": [3], "A:x": [4, 5], "B": [6]}
    A = rng.normal(size=(7, 7))
    C = A @ A.T / 7 + np.eye(7) * 0.1
    b = rng.normal(size=7)
    fixef = pd.DataFrame({"estimate": b, "std_error": np.sqrt(np.diag(C))}, index=[f"b{i}" for i in range(7)])
    res = build(["y"], {"animal": [1.0], "units": [1.0]}, np.eye(2), fixef=fixef, fixef_vcov=C,
                fixed_terms=terms, n_obs=100)
    w = res.wald()
    M = np.linalg.inv(C)
    cols = lambda names: [c for n in names for c in terms[n]]   # noqa: E731
    order = list(terms)
    for k, t in enumerate(order):
        df = len(terms[t])
        assert w.loc[t, "F_inc"] == pytest.approx(_ss(M, b, terms[t], cols(order[:k])) / df, rel=1e-9)
    # conditional: A is not adjusted for A:x (contains it), x neither; A:x and B for everything else
    adjust = {"(Intercept)": [], "A": ["(Intercept)", "x", "B"], "x": ["(Intercept)", "A", "B"],
              "A:x": ["(Intercept)", "A", "x", "B"], "B": ["(Intercept)", "A", "x", "A:x"]}
    for t, others in adjust.items():
        assert w.loc[t, "F_con"] == pytest.approx(_ss(M, b, terms[t], cols(others)) / len(terms[t]), rel=1e-9)
    # a term no other term contains: the usual b' C^-1 b / df
    bb = b[[4, 5]]
    assert w.loc["A:x", "F_con"] == pytest.approx(bb @ np.linalg.solve(C[4:6, 4:6], bb) / 2, rel=1e-9)
    assert (w["denDF"] == 100 - 7).all()
    assert list(res.wald(den_df=12)["denDF"]) == [12.0] * 5
    w2 = res.wald(den_df={"A": 20})
    assert w2.loc["A", "denDF"] == 20 and w2.loc["B", "denDF"] == 93
    assert w2.loc["A", "p_con"] == pytest.approx(stats.f.sf(w.loc["A", "F_con"], 2, 20), rel=1e-12)
    with pytest.raises(ModelError, match=r"den_df names fixed terms that the model does not have: \['C'\]"):
        res.wald(den_df={"C": 3})


def test_term_factors_for_marginality():
    assert term_factors("(Intercept)") == frozenset()
    assert term_factors("sex:age") == {"sex", "age"}
    assert term_factors("at(trait, 'a:b'):sex") == {"trait", "sex"}
    assert term_factors("at(trait):poly(age, 2)") == {"trait", "poly(age, 2)"}


def test_wald_leaves_out_aliased_columns():
    fixef = pd.DataFrame({"estimate": [6.0, 0.0, 2.2], "std_error": [0.17, np.nan, 0.16]},
                         index=["(Intercept)", "sex_1", "sex_2"])
    C = np.diag([0.17 ** 2, 0.0, 0.16 ** 2])
    res = build(["bwt"], {"animal": [1.0], "units": [1.0]}, np.eye(2), fixef=fixef, fixef_vcov=C,
                fixed_terms={"(Intercept)": [0], "sex": [1, 2]})
    w = res.wald()
    assert w.loc["sex", "df"] == 1
    assert w.loc["sex", "F_con"] == pytest.approx((2.2 / 0.16) ** 2)
    with pytest.raises(ExpressionError, match=r"aliased \(not estimable\) fixed effects: \['sex_1'\]"):
        res.predict(pd.DataFrame({"sex_1": [1.0]}))


def test_predict_linear_combinations_with_se():
    res = model2()
    C = res.fixef_vcov
    L = pd.DataFrame({"(Intercept)": [1.0, 1.0], "sex_2": [0.0, 1.0]}, index=["female", "male"])
    p = res.predict(L)
    assert list(p.index) == ["female", "male"] and list(p.columns) == ["estimate", "std_error"]
    assert p.loc["male", "estimate"] == pytest.approx(6.058669 + 2.206996)
    assert p.loc["male", "std_error"] == pytest.approx(math.sqrt(C[0, 0] + C[1, 1] + 2 * C[0, 1]))
    assert p.loc["female", "std_error"] == pytest.approx(0.1718244)
    arr = res.predict(np.array([[0.0, 2.0]]))
    assert arr.loc[0, "estimate"] == pytest.approx(2 * 2.206996) and arr.loc[0, "std_error"] == pytest.approx(2 * 0.1619974)
    s = res.predict(pd.Series({"sex_2": 1.0}))
    assert s["estimate"].iloc[0] == pytest.approx(2.206996)
    with pytest.raises(ExpressionError, match=r"model does not have: \['sex_3'\]"):
        res.predict(pd.DataFrame({"sex_3": [1.0]}))
    with pytest.raises(ExpressionError, match=r"one column per fixed effect \(2"):
        res.predict(np.ones((1, 3)))


def test_missing_fixef_vcov_gives_typed_errors():
    res = model2(fixef_vcov=None)
    with pytest.raises(ModelError, match="not stored"):
        res.wald()
    with pytest.raises(ModelError, match="not stored"):
        res.predict(np.eye(2))


# ---------------------------------------------------------------------- likelihood-ratio test
def _small_big():
    """Gryphon-like: residual-only model (1 parameter) nested in model 1 (2 parameters)."""
    small = build(["bwt"], {"units": [7.2]}, np.array([[0.12]]), loglik=-2100.0)
    big = model1(loglik=-2031.0)
    return small, big


def test_lrt_statistic_df_and_p_values():
    small, big = _small_big()
    t = mvreml.lrt(small, big)
    assert (t.statistic, t.df) == (138.0, 1)
    assert t.pvalue == pytest.approx(stats.chi2.sf(138.0, 1), rel=1e-12)
    m = lrt(small, big, boundary=True)
    assert m.pvalue == pytest.approx(0.5 * stats.chi2.sf(138.0, 1), rel=1e-12)
    assert "0.5 chi2(0) + 0.5 chi2(1)" in str(m)
    # zero statistic: the mixture puts half its mass at 0 -> p = 1; two parameters: chi2(1)/chi2(2)
    flat = lrt(small, model1(loglik=-2100.0), boundary="mixture")
    assert flat.pvalue == 1.0 and flat.statistic == 0.0
    big3 = build(["bwt"], {"animal": [3.0], "byear": [0.9], "units": [2.3]}, np.eye(3) * 0.1, loglik=-2090.0)
    t3 = lrt(small, big3, boundary="mixture")
    assert t3.df == 2
    assert t3.pvalue == pytest.approx(0.5 * stats.chi2.sf(20.0, 1) + 0.5 * stats.chi2.sf(20.0, 2), rel=1e-12)


def test_lrt_refuses_fits_that_cannot_be_compared():
    small, big = _small_big()
    cases = [
        (small, model1(model=dict(big.model, data_signature="other")), "different data"),
        (small, model1(n_obs=853), "different numbers of observations"),
        (small, model1(model=dict(big.model, fixed="bwt ~ 1 + sex")), "fixed effects differ .'bwt ~ 1' vs"),
        (small, model2(model=dict(big.model)), r"fixed effects differ \(rank of X 1 vs 2\)"),
        (big, small, "pass the smaller model first"),
        (small, model1(loglik=-2100.5), "has not reached its maximum"),
        (build(["bwt"], {"byear": [1.0], "units": [7.2]}, np.eye(2)), build(
            ["bwt"], {"animal": [1.0], "dam": [1.0], "units": [7.2]}, np.eye(3)), "term 'byear' of the smaller"),
    ]
    for s, b, message in cases:
        with pytest.raises(ComparisonError, match=message):
            lrt(s, b)
    # us(trait) is not a special case of diag(trait), even when the other model has more parameters
    us_small = bivariate()
    diag_big = build(["bwt", "tarsus"], {"animal": [1.0, 0.0, 2.0], "Block": [1.0, 0.1, 1.0],
                                         "units": [1.0, 0.2, 3.0]}, np.eye(9), n_obs=1537, loglik=-100.0,
                     structures={"animal": "diag", "Block": "us", "units": "us"},
                     fixef=us_small.fixef, fixef_vcov=us_small.fixef_vcov, fixed_terms=us_small.fixed_terms,
                     model=dict(us_small.model, n_varparams=8))
    with pytest.raises(ComparisonError, match="term 'animal' is us in the smaller model, which is not a "
                                              "special case of diag"):
        lrt(us_small, diag_big)
    with pytest.raises(ComparisonError, match="boundary must be"):
        lrt(small, big, boundary="half")
    with pytest.raises(ComparisonError, match="two mvreml.Result"):
        lrt(small, "big")


def test_lrt_warns_on_non_converged_fits():
    small, _ = _small_big()
    big = model1(converged=False, reason="maximum of 20 iterations reached")
    with pytest.warns(ConvergenceWarning, match="bigger model did not converge \\(maximum of 20"):
        lrt(small, big)


# ---------------------------------------------------------------------- summary and JSON
def test_summary_prints_components_bounds_and_both_logliks():
    res = bivariate(bound=["P", "U", "B", "P", "U", "F"])
    text = str(res.summary())
    assert repr(res.summary()) == text and res.summary().text == text
    for piece in ("animal:trait!tarsus:bwt", "units:trait!tarsus:tarsus", "2.459809", "1.073264",
                  "(lme4/nlme convention", f"{res.loglik:.4f}", "log-likelihood (ASReml)  -2679.7410",
                  "AIC, BIC", f"{res.aic:.4f}", "converged after 6 iterations: log-likelihood change below 1e-8",
                  "trait_tarsus", "2 animals in the pedigree have no records"):
        assert piece in text, piece
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("animal:", "units:"))}
    assert [rows[k][-1] for k in rows] == ["P", "U", "B", "P", "U", "F"]
    assert rows["animal:trait!bwt:bwt"][3] == f"{3.368397 / 0.6348307:.3f}"
    bad = str(model1(converged=False, reason="maximum of 20 iterations reached").summary())
    assert "NOT CONVERGED after 6 iterations: maximum of 20 iterations reached" in bad
    html = res._repr_html_()
    assert "<table" in html and "animal:trait!tarsus:bwt" in html and "-2679.7410" in html


def test_summary_shortens_a_long_fixed_effects_table():
    n = 45
    fixef = pd.DataFrame({"estimate": np.arange(n, dtype=float), "std_error": np.ones(n)},
                         index=[f"cg_{i}" for i in range(n)])
    res = build(["bwt"], {"animal": [1.0], "units": [1.0]}, np.eye(2), fixef=fixef, fixef_vcov=np.eye(n),
                fixed_terms={"cg": list(range(n))})
    text = str(res.summary())
    assert "cg_39" in text and "cg_40" not in text and "... 5 more fixed effects: see res.fixef" in text


def _assert_same(a, b):
    for f in fields(Result):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f.name
        elif f.name == "blups":
            assert list(x) == list(y)
            for k in x:
                pd.testing.assert_frame_equal(x[k], y[k], check_exact=True)
        elif f.name == "model":
            assert x.keys() == y.keys()
            for k in x:
                if isinstance(x[k], float) and math.isnan(x[k]):
                    assert math.isnan(y[k])
                else:
                    assert x[k] == y[k], k
        else:
            assert x == y and type(x) is type(y), f.name


def test_json_round_trip_keeps_every_field_and_the_summary():
    res = bivariate(bound=["P", "U", "B", "P", "U", "F"])
    res.varcomp.loc["units:trait!tarsus:tarsus", ["std_error", "z_ratio"]] = np.nan    # fixed component
    res.components_vcov[5, :] = res.components_vcov[:, 5] = 0.0
    res.model.update(extra={"inf": math.inf, "nan": math.nan, "ints": [1, 2]}, seconds=np.float64(1.5),
                     n_iter=np.int64(3))
    res.blups["units"] = pd.DataFrame({"bwt": [0.5], "tarsus": [-np.inf], "pev_bwt": [1.0], "pev_tarsus": [2.0]},
                                      index=pd.Index(["A1"], name="units"))
    res.history.loc[1, "seconds"] = np.inf
    res.history["note"] = pd.array(["start", None], dtype="str")    # a string column with a missing value
    text = res.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    back = Result.from_json(text)
    _assert_same(res, back)
    assert back.model["extra"]["inf"] == math.inf and back.model["n_iter"] == 3
    assert str(back.summary()) == str(res.summary())
    assert back._repr_html_() == res._repr_html_()
    pd.testing.assert_frame_equal(back.wald(), res.wald())
    pd.testing.assert_frame_equal(back.heritability("animal"), res.heritability("animal"))
    # without fixef_vcov, and indented
    m = model2(fixef_vcov=None)
    _assert_same(m, Result.from_json(m.to_json(indent=1)))


def test_from_json_refuses_other_documents():
    with pytest.raises(ModelError, match="not a JSON document"):
        Result.from_json("{oops")
    with pytest.raises(ModelError, match="not an mvreml result"):
        Result.from_json('{"format": "something"}')
    with pytest.raises(ModelError, match=r"lacks fields \['loglik'"):
        Result.from_json('{"format": "mvreml.Result", "version": 1, "result": {"traits": ["bwt"]}}')


# ---------------------------------------------------------------------- construction checks
def test_inconsistent_results_are_refused_when_built():
    with pytest.raises(ModelError, match=r"components_vcov has shape \(1, 1\), expected \(2, 2\)"):
        model1(components_vcov=np.eye(1))
    with pytest.raises(ModelError, match="fixed_terms must cover each of the 2 rows"):
        model2(fixed_terms={"sex": [1]})
    with pytest.raises(ModelError, match=r"fixef_vcov has shape \(1, 1\), expected \(2, 2\)"):
        model2(fixef_vcov=np.eye(1))
    with pytest.raises(ModelError, match=r"model lacks keys \['data_signature'\]"):
        model1(model={"fixed": "bwt ~ 1", "random": "", "residual": "", "n_varparams": 2})
    with pytest.raises(ModelError, match=r"varcomp lacks columns \['bound'\]"):
        r = model1()
        model1(varcomp=r.varcomp.drop(columns="bound"))
    with pytest.raises(ModelError, match="component term 'animal' has no entry"):
        model1(structures={"units": "idv"})


def test_repr_is_one_line():
    assert repr(model1()) == "<mvreml.Result bwt: logLik -2031.038, 2 variance parameters, converged>"


def test_no_warnings_from_ordinary_use():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = bivariate()
        res.summary().text
        res._repr_html_()
        res.correlation("animal", se=True)
        res.wald()
