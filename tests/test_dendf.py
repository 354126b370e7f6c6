"""res.wald(den_df="satterthwaite") against lmerTest 3.1-3 (numbers printed by
tests/data/lme4_nlme/oats_ddf.R on nlme's Oats split plot; no R needed here)."""
import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.dendf import SatterthwaiteParts, satterthwaite_df
from mvreml.errors import ModelError


@pytest.fixture(scope="module")
def oats(data_dir):
    return pd.read_csv(data_dir / "lme4_nlme" / "Oats.csv")


@pytest.fixture(scope="module")
def unbalanced(oats):
    # oats_ddf.R removes rows 5, 18, 31, 44, 57, 70 (R's 1-based row numbers)
    ub = oats.drop(index=[4, 17, 30, 43, 56, 69]).reset_index(drop=True)
    return mvreml.fit("yield ~ N + Variety", "~ Block + Block:Variety", data=ub)


def test_oats_split_plot_variety_on_10_df_nitro_on_45(oats):
    res = mvreml.fit("yield ~ N + Variety + N:Variety", "~ Block + Block:Variety", data=oats)
    w = res.wald(den_df="satterthwaite")
    # Pinheiro & Bates (2000): Variety tested against the whole plots, nitro against the sub-plots
    assert w.loc["Variety", "denDF"] == pytest.approx(10.0, abs=1e-4)
    assert w.loc["N", "denDF"] == pytest.approx(45.0, abs=1e-4)
    assert w.loc["N:Variety", "denDF"] == pytest.approx(45.0, abs=1e-4)
    np.testing.assert_allclose(w["denDF_inc"], w["denDF"], atol=1e-4)       # balanced: the same strata
    # lmerTest anova(type = 3): F 37.68565, 1.48534, 0.30282
    assert w.loc["N", "F_con"] == pytest.approx(37.68565, abs=5e-5)
    assert w.loc["Variety", "F_con"] == pytest.approx(1.48534, abs=5e-6)
    assert w.loc["N:Variety", "F_con"] == pytest.approx(0.30282, abs=5e-6)
    # the p values use these df, not N - p = 60
    from scipy import stats
    assert w.loc["Variety", "p_con"] == pytest.approx(stats.f.sf(w.loc["Variety", "F_con"], 2, 10.0), rel=1e-5)
    assert res.wald().loc["Variety", "denDF"] == 60


def test_unbalanced_oats_matches_lmertest_satterthwaite(unbalanced):
    res = unbalanced
    # components as lme4 (tightly converged): Variety:Block 102.1097828, Block 200.9643759, 177.5718309
    assert res.covariance("Block:Variety").iloc[0, 0] == pytest.approx(102.1097828, rel=1e-6)
    assert res.covariance("Block").iloc[0, 0] == pytest.approx(200.9643759, rel=1e-6)
    w = res.wald(den_df="satterthwaite")
    # lmerTest anova(type = 3, ddf = "Satterthwaite"): N 45.88673556 (F 34.16295), Variety 10.09703338 (F 1.55674)
    assert w.loc["N", "denDF"] == pytest.approx(45.88673556, rel=1e-6)
    assert w.loc["Variety", "denDF"] == pytest.approx(10.09703338, rel=1e-6)
    assert w.loc["N", "F_con"] == pytest.approx(34.16295, abs=5e-5)
    assert w.loc["Variety", "F_con"] == pytest.approx(1.55674, abs=5e-6)


def test_single_contrast_matches_lmertest_contest(unbalanced):
    res = unbalanced
    model, theta = res._fitted
    parts = SatterthwaiteParts(model, theta, res.varcomp["bound"].isin(["P", "U"]).to_numpy())
    L = np.zeros(len(res.fixef))
    L[list(res.fixef.index).index("Variety[T.Victory]")] = 1.0
    # lmerTest contest(m2, L1, ddf = "Satterthwaite"): DenDF 10.10337916
    assert satterthwaite_df(L, parts) == pytest.approx(10.10337916, rel=1e-6)
    # the finite differences leave the factor at the reported theta
    assert model.factorized_at(theta)


def test_oats_kenward_roger_balanced_and_unbalanced_match_pbkrtest(oats, unbalanced):
    res = mvreml.fit("yield ~ N + Variety + N:Variety", "~ Block + Block:Variety", data=oats)
    w = res.wald(den_df="kr")
    # balanced: the strata exactly; the adjustment vanishes (F as the Wald F, 37.68565 ...)
    assert w.loc["Variety", "denDF"] == pytest.approx(10.0, abs=1e-6)
    assert w.loc["N", "denDF"] == pytest.approx(45.0, abs=1e-6)
    assert w.loc["N:Variety", "denDF"] == pytest.approx(45.0, abs=1e-6)
    assert w.loc["N", "F_con"] == pytest.approx(37.68565, abs=5e-5)
    # unbalanced, lmerTest anova(type = 3, ddf = "Kenward-Roger") (pbkrtest 0.5.2):
    # N 45.73089856 (F 34.02486), Variety 9.95591991 (F 1.55602), F scaled by K&R's lambda
    w = unbalanced.wald(den_df="kr")
    assert w.loc["N", "denDF"] == pytest.approx(45.73089856, rel=1e-7)
    assert w.loc["Variety", "denDF"] == pytest.approx(9.95591991, rel=1e-7)
    assert w.loc["N", "F_con"] == pytest.approx(34.02486, abs=5e-5)
    assert w.loc["Variety", "F_con"] == pytest.approx(1.55602, abs=5e-6)
    from mvreml.kenward_roger import KenwardRoger

    model, theta = unbalanced._fitted
    kr = KenwardRoger(model, theta, np.ones(3, bool))
    np.testing.assert_allclose(kr.phi, unbalanced.fixef_vcov, rtol=1e-8, atol=1e-9)
    L = np.zeros(len(unbalanced.fixef))
    L[list(unbalanced.fixef.index).index("Variety[T.Victory]")] = 1.0
    # contest(m2, L1, ddf = "Kenward-Roger"): DenDF 9.959072392
    assert kr.ddf(L) == pytest.approx(9.959072392, rel=1e-7)


def test_kenward_roger_is_refused_where_it_would_be_an_approximation(oats):
    # fa(): V is not linear in the loadings (K&R's second-derivative terms do not vanish)
    with pytest.warns(mvreml.errors.BoundaryWarning):
        res = mvreml.fit("yield ~ N", "~ fa(Variety, 1):Block", data=oats)
    with pytest.raises(ModelError, match="linearly.*satterthwaite"):
        res.wald(den_df="kr")


def test_den_df_methods_need_the_fitted_model(unbalanced):
    back = mvreml.Result.from_json(unbalanced.to_json())
    for method in ("satterthwaite", "kr"):
        with pytest.raises(ModelError, match="needs the fitted model"):
            back.wald(den_df=method)
    with pytest.raises(ModelError, match="'containment'"):
        unbalanced.wald(den_df="containment")
