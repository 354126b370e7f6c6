"""Random regression: covariate bases in random terms (pol(), leg(), lme4's bars), covariate
slopes (x:g), BLUP curves; against lme4 and an independent dense computation.

lme4's figures for the uncorrelated model and for Orthodont come from
tests/data/lme4_nlme/random_regression.R (Debian's r-cran-lme4), which wrote
random_regression.csv beside it; the tests read that file and need no R.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.errors import DataError, DataWarning, FormulaError

from dense import assert_engine_matches_dense
from test_met import _model, _pedigree


@pytest.fixture(scope="module")
def sleep(data_dir):
    return pd.read_csv(data_dir / "lme4_nlme" / "sleepstudy.csv")


@pytest.fixture(scope="module")
def lme4_ref(data_dir):
    ref = pd.read_csv(data_dir / "lme4_nlme" / "random_regression.csv")
    return {(m, w): v for m, w, v in ref.itertuples(index=False)}


# ---------------------------------------------------------------- lme4 / asreml references
def test_sleepstudy_correlated_slopes_as_lme4(sleep):
    """lmer(Reaction ~ Days + (Days | Subject)): REML criterion 1743.628, variances 612.10 /
    35.07, correlation 0.07, residual 654.94, fixed SEs 6.825 / 1.546 (SOURCE.md)."""
    res = mvreml.fit("Reaction ~ Days", random="~ (Days | Subject)", data=sleep)
    assert res.converged
    assert -2 * res.loglik == pytest.approx(1743.6282722424, abs=1e-4)
    G = res.covariance("Subject")
    assert list(G.index) == ["(Intercept)", "Days"]
    assert G.iloc[0, 0] == pytest.approx(612.10, abs=0.02)   # printed to 2 decimals
    assert G.iloc[1, 1] == pytest.approx(35.07, abs=0.01)
    assert res.correlation("Subject").iloc[1, 0] == pytest.approx(0.07, abs=0.005)
    assert res.covariance("units").iloc[0, 0] == pytest.approx(654.94, abs=0.01)
    np.testing.assert_allclose(res.fixef["estimate"], [251.405, 10.467], atol=1e-3)
    np.testing.assert_allclose(res.fixef["std_error"], [6.825, 1.546], atol=1e-3)
    # the same model in asreml's words: an orthogonal or Legendre basis, the same log L
    for random in ("~ us(pol(Days, 1)):Subject", "~ us(leg(Days, 1)):Subject"):
        other = mvreml.fit("Reaction ~ Days", random=random, data=sleep)
        assert other.loglik == pytest.approx(res.loglik, abs=1e-6), random
        np.testing.assert_allclose(other.fixef["std_error"], res.fixef["std_error"], rtol=1e-6)


def test_sleepstudy_uncorrelated_and_slopes_term(sleep, lme4_ref):
    res = mvreml.fit("Reaction ~ Days", random="~ (Days || Subject)", data=sleep)
    assert -2 * res.loglik == pytest.approx(lme4_ref[("sleep_uncorr", "REMLcrit")], abs=1e-4)
    assert res.covariance("Subject").iloc[0, 0] == pytest.approx(
        lme4_ref[("sleep_uncorr", "vcov:Subject|(Intercept)|")], rel=1e-4)
    assert res.covariance("Days:Subject").iloc[0, 0] == pytest.approx(
        lme4_ref[("sleep_uncorr", "vcov:Subject.1|Days|")], rel=1e-4)
    assert res.covariance("units").iloc[0, 0] == pytest.approx(
        lme4_ref[("sleep_uncorr", "vcov:Residual|NA|")], rel=1e-4)
    # asreml's ~ Subject + Days:Subject with a numeric Days: the same model (Subject as a factor)
    df = sleep.assign(Subject=sleep["Subject"].astype(str))
    with pytest.warns(DataWarning, match="integer column 'Days' is a covariate"):
        asr = mvreml.fit("Reaction ~ Days", random="~ Subject + Days:Subject", data=df)
    assert asr.loglik == pytest.approx(res.loglik, abs=1e-6)


def test_orthodont_age_slopes_as_lme4(data_dir, lme4_ref):
    orth = pd.read_csv(data_dir / "lme4_nlme" / "Orthodont.csv")
    res = mvreml.fit("distance ~ age + Sex", random="~ (age | Subject)", data=orth)
    assert -2 * res.loglik == pytest.approx(lme4_ref[("orth_corr", "REMLcrit")], abs=1e-4)
    G = res.covariance("Subject")
    assert G.iloc[0, 0] == pytest.approx(lme4_ref[("orth_corr", "vcov:Subject|(Intercept)|")], rel=1e-3)
    assert G.iloc[1, 1] == pytest.approx(lme4_ref[("orth_corr", "vcov:Subject|age|")], rel=1e-3)
    assert G.iloc[1, 0] == pytest.approx(lme4_ref[("orth_corr", "vcov:Subject|(Intercept)|age")], rel=1e-3)
    for name, se in zip(["(Intercept)", "age"], res.fixef["std_error"][:2]):
        assert se == pytest.approx(lme4_ref[("orth_corr", f"se:{name}")], rel=1e-4)


def test_blup_curves_and_their_standard_errors(sleep):
    res = mvreml.fit("Reaction ~ Days", random="~ (Days | Subject)", data=sleep)
    blup = res.blup("Subject")
    # lme4's ranef(fm1)$Subject for subject 308
    assert blup.loc["308", "(Intercept)"] == pytest.approx(2.2585654, abs=1e-5)
    assert blup.loc["308", "Days"] == pytest.approx(9.1989719, abs=1e-5)
    curve = res.predict_curve("Subject", [0.0, 4.5, 9.0])
    mine = curve[curve["level"] == "308"]
    np.testing.assert_allclose(mine["value"], 2.2585654 + 9.1989719 * np.array([0, 4.5, 9]), atol=1e-4)
    pev = np.array([[blup.loc["308", "pev_(Intercept)"], blup.loc["308", "pev_Days:(Intercept)"]],
                    [blup.loc["308", "pev_Days:(Intercept)"], blup.loc["308", "pev_Days"]]])
    b = np.array([1.0, 4.5])
    assert mine["std_error"].iloc[1] == pytest.approx(np.sqrt(b @ pev @ b), rel=1e-10)
    # the round trip keeps what the curves need
    again = mvreml.Result.from_json(res.to_json()).predict_curve("Subject", [4.5])
    assert again.loc[again["level"] == "308", "value"].iloc[0] == pytest.approx(mine["value"].iloc[1])
    with pytest.raises(mvreml.errors.ModelError, match="no covariate basis"):
        res.predict_curve("units", [1.0])


# ---------------------------------------------------------------- dense checks
def _rr_data(seed, n_gen=10, n_rec=4, traits=("y1",), missing=0.0):
    rng = np.random.default_rng(seed)
    rows = [(f"G{g:02d}", rng.uniform(5, 300)) for g in range(n_gen) for _ in range(n_rec)]
    df = pd.DataFrame(rows, columns=["gen", "x"])
    df["B"] = rng.integers(0, 3, len(df)).astype(str)
    for j, tr in enumerate(traits):
        y = rng.standard_normal(len(df)) * (1 + j) + 0.01 * df["x"]
        if missing:
            y[rng.random(len(df)) < missing] = np.nan
        df[tr] = y
    return df


RR_CASES = [
    (dict(), "y1 ~ 1 + x", "~ us(pol(x, 2)):gen", "~ units", False),
    (dict(), "y1 ~ 1 + x", "~ (1 + x | gen) + B", "~ units", False),
    (dict(), "y1 ~ 1 + x", "~ gen + x:gen", "~ units", False),
    (dict(), "y1 ~ 1 + x", "~ diag(leg(x, 2)):gen", "~ units", False),
    (dict(n_gen=12), "y1 ~ 1 + x", "~ us(leg(x, 1)):vm(gen, ped) + diag(leg(x, 1)):ide(gen)", "~ units", True),
    (dict(traits=("y1", "y2"), missing=0.1), "cbind(y1, y2) ~ trait + trait:x",
     "~ us(trait):us(leg(x, 1)):gen", "~ units:us(trait)", False),
    (dict(traits=("y1", "y2"), n_gen=12, missing=0.1), "cbind(y1, y2) ~ trait + trait:x",
     "~ us(trait):diag(leg(x, 1)):vm(gen, ped)", "~ units:us(trait)", True),
]


@pytest.mark.parametrize("case", range(len(RR_CASES)))
def test_random_regression_matches_dense(case):
    kw, fixed, random, residual, with_ped = RR_CASES[case]
    df = _rr_data(case, **kw)
    relmat = {"ped": _pedigree(df["gen"].nunique(), case)} if with_ped else None
    design, blocks, model, theta = _model(df, fixed, random, residual, relmat, seed=case)
    assert any(rd.obs_vals is not None and np.any(rd.obs_vals != 1.0) for rd in design.random)
    assert_engine_matches_dense(design, blocks, model, theta)


def test_z_values_are_the_basis_from_the_data():
    """leg(x, 1) on gen: a record of genotype g with covariate x has the entries
    sqrt(1/2) and sqrt(3/2) z (z = x scaled to [-1, 1]) in columns 2g and 2g + 1."""
    df = _rr_data(3)
    design, *_ = _model(df, "y1 ~ 1", "~ us(leg(x, 1)):gen", "~ units", None)
    rd = design.random[0]
    gens = sorted(df["gen"].unique())
    z = 2 * (df["x"] - df["x"].min()) / (df["x"].max() - df["x"].min()) - 1
    expect = {}
    for i, (g, zi) in enumerate(zip(df["gen"], z)):
        expect[(i, 2 * gens.index(g))] = np.sqrt(0.5)
        expect[(i, 2 * gens.index(g) + 1)] = np.sqrt(1.5) * zi
    got = {(int(r), int(c)): v for r, c, v in zip(rd.obs_rows, rd.obs_cols, rd.obs_vals)}
    assert got.keys() == expect.keys()
    np.testing.assert_allclose([got[k] for k in expect], list(expect.values()), rtol=1e-12)


# ---------------------------------------------------------------- a simulated test-day model
@pytest.mark.slow
def test_simulated_test_day_model_recovers_truth():
    """10,000 animals with a pedigree, 10 test days each (the issue's test-day model):
    us(leg(dim, 2)) additive and diag(leg(dim, 2)) permanent-environment coefficients."""
    rng = np.random.default_rng(2)
    n, n_tests = 10_000, 10
    # 10 discrete generations of 1,000, as a breeding programme: 25 sires of the previous
    # generation (even numbers) each mated to many of its dams (odd numbers). Random parents
    # among all earlier animals would make the pedigree a random graph, whose Cholesky factor
    # fills in like a dense matrix.
    gen_size = n // 10
    rows = [(f"A{i}", 0, 0) for i in range(gen_size)]
    for i in range(gen_size, n):
        first = (i // gen_size - 1) * gen_size
        rows.append((f"A{i}", f"A{first + 2 * rng.integers(0, 25)}",
                     f"A{first + 2 * rng.integers(0, gen_size // 2) + 1}"))
    P = mvreml.Pedigree(pd.DataFrame(rows, columns=["animal", "sire", "dam"]))
    Gtrue = np.array([[4.0, 1.0, -0.3], [1.0, 1.5, 0.2], [-0.3, 0.2, 0.5]])
    PEtrue = np.diag([2.0, 0.6, 0.3])
    L = np.linalg.cholesky(Gtrue)
    # breeding values by the recursion a_i = (a_s + a_d) / 2 + Mendelian sampling (F ignored:
    # the simulated pedigree has little inbreeding)
    a = np.zeros((n, 3))
    for i, (_, s, d) in enumerate(rows):
        par = [int(p[1:]) for p in (s, d) if p != 0]
        a[i] = sum(a[j] for j in par) / 2 + np.sqrt(1 - 0.25 * len(par)) * (L @ rng.standard_normal(3))
    pe = rng.standard_normal((n, 3)) * np.sqrt(np.diag(PEtrue))
    dim = np.sort(rng.uniform(5, 305, (n, n_tests)), axis=1)
    z = 2 * (dim - 5) / 300 - 1
    phi = np.stack([np.full_like(z, np.sqrt(0.5)), np.sqrt(1.5) * z,
                    np.sqrt(2.5) * 0.5 * (3 * z * z - 1)], axis=-1)          # n x tests x 3
    y = 20 + np.einsum("ntk,nk->nt", phi, a + pe) + rng.normal(0, 1.0, (n, n_tests))
    df = pd.DataFrame({"animal": np.repeat([f"A{i}" for i in range(n)], n_tests), "dim": dim.ravel(),
                       "y": y.ravel()})
    # dim's observed range is a hair inside [5, 305]: leg() scales it to [-1, 1] from the data
    res = mvreml.fit("y ~ 1 + leg(dim, 2)", random="~ us(leg(dim, 2)):vm(animal, ped) + "
                     "diag(leg(dim, 2)):ide(animal)", data=df, relmat={"ped": P})
    assert res.converged
    G = res.covariance("leg(dim, 2):animal").to_numpy()
    tol = 0.15 * np.sqrt(np.outer(np.diag(Gtrue), np.diag(Gtrue))) + 0.05
    assert np.all(np.abs(G - Gtrue) <= tol), (G, Gtrue)
    PE = np.diag(res.covariance("leg(dim, 2):ide(animal)").to_numpy())
    np.testing.assert_allclose(PE, np.diag(PEtrue), rtol=0.25, atol=0.05)
    assert res.covariance("units").iloc[0, 0] == pytest.approx(1.0, rel=0.03)


# ---------------------------------------------------------------- bad input
def test_bad_random_regression_input(sleep):
    df = _rr_data(5)
    df["few"] = np.where(np.arange(len(df)) % 2, 1.0, 2.0)
    with pytest.raises(DataError, match=r"order 2 needs at least 3 distinct values of 'few', which has 2"):
        mvreml.fit("y1 ~ 1", random="~ us(pol(few, 2)):gen", data=df)
    with pytest.raises(DataError, match=r"'k' is constant"):
        mvreml.fit("y1 ~ 1", random="~ us(leg(k, 1)):gen", data=df.assign(k=3.0))
    nan = df.copy()
    nan.loc[[0, 5, 9], "x"] = np.nan
    with pytest.warns(DataWarning, match="3 rows with missing 'x' dropped"):
        res = mvreml.fit("y1 ~ 1", random="~ us(leg(x, 1)):gen", data=nan)
    assert res.n_dropped == 3
    with pytest.raises(DataError, match="all numeric"):
        mvreml.fit("y1 ~ 1", random="~ x:k", data=df.assign(k=np.arange(len(df))))
    with pytest.raises(FormulaError, match="give the covariate basis a structure"):
        mvreml.fit("y1 ~ 1", random="~ leg(x, 1):gen", data=df)
    with pytest.raises(DataError, match="must be a numeric covariate"):
        mvreml.fit("y1 ~ 1", random="~ us(leg(B, 1)):gen", data=df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # (the fixed formula's own note on an integer covariate is another matter)
        warnings.filterwarnings("ignore", message="integer column 'Days' .* is fitted as a covariate")
        # a bar term says which column is the factor: no warning about the integer Days
        mvreml.fit("Reaction ~ Days", random="~ (Days | Subject)", data=sleep)


def test_pol_and_leg_in_the_fixed_formula(sleep):
    """pol(Days, 1) spans the same fixed space as 1 + Days: the same variance components and
    fitted values (log L differs by the constant log|T'T| of the reparameterisation, as REML's
    log|X'V^-1 X| does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        raw = mvreml.fit("Reaction ~ Days", random="~ (Days | Subject)", data=sleep)
        pol = mvreml.fit("Reaction ~ pol(Days, 1)", random="~ (Days | Subject)", data=sleep)
        leg = mvreml.fit("Reaction ~ leg(Days, 1)", random="~ (Days | Subject)", data=sleep)
    for other in (pol, leg):
        np.testing.assert_allclose(other.varcomp["estimate"], raw.varcomp["estimate"], rtol=1e-5)
        np.testing.assert_allclose(other.fitted(), raw.fitted(), rtol=1e-8)
    # leg's column is sqrt(3/2) z with z = Days scaled to [-1, 1]: slope per day = b sqrt(3/2) * 2/9
    b = leg.fixef["estimate"].iloc[1]
    assert b * np.sqrt(1.5) * 2 / 9 == pytest.approx(raw.fixef.loc["Days", "estimate"], rel=1e-6)


def test_asreml_str_is_lme4s_correlated_slopes(sleep):
    """str(~ Subject + Days:Subject, ~ us(2):id(Subject)) is (1 + Days | Subject)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        bar = mvreml.fit("Reaction ~ Days", random="~ (Days | Subject)", data=sleep)
        s = mvreml.fit("Reaction ~ Days", random="~ str(~ Subject + Days:Subject, ~ us(2):id(Subject))",
                       data=sleep)
    assert s.loglik == pytest.approx(bar.loglik, abs=1e-8)
    np.testing.assert_allclose(s.covariance("Subject").to_numpy(), bar.covariance("Subject").to_numpy(),
                               rtol=1e-6)
    with pytest.raises(FormulaError, match="must match the 2 terms"):
        mvreml.fit("Reaction ~ Days", random="~ str(~ Subject + Days:Subject, ~ us(3):id(Subject))",
                   data=sleep)
