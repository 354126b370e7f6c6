"""Structures on any factor (multi-environment trials): products of structured dimensions,
at() restrictions, nesting, ide(), dsum residual sections.

Published ASReml-R fits (tests/data/agridat/SOURCE.md) and the sparse engine against an
independent dense computation (V = Z G Z' + R built directly, tests/dense.py): log L to 1e-8
relative, the score against finite differences and its dense form, the AI matrix against
1/2 y'P V_i P V_j P y.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.api import _blocks
from mvreml.design import build_design
from mvreml.errors import DataError, FormulaError
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.likelihood import REMLModel

from dense import assert_engine_matches_dense


# ---------------------------------------------------------------- published fits
@pytest.fixture(scope="module")
def damesa(data_dir):
    return pd.read_csv(data_dir / "agridat" / "damesa.maize.csv")


@pytest.fixture(scope="module")
def cucumber(data_dir):
    df = pd.read_csv(data_dir / "agridat" / "bridges.cucumber.csv")
    df["rowf"] = df["row"].astype(str)
    df["colf"] = df["col"].astype(str)
    return df


def _sig3(x, ref):
    """Equal to 3 significant digits (or both zero)."""
    if ref == 0:
        return abs(x) < 1e-6
    return abs(x - ref) <= 0.5 * 10 ** (np.floor(np.log10(abs(ref))) - 2) * 1.0001


DAMESA = {  # component: (estimate, SE, bound), Damesa et al. (2017) via agridat
    "at(site, S1):rep": (0.08819, 0.1814, "P"), "at(site, S2):rep": (1.383, 1.426, "P"),
    "at(site, S3):rep": (0.0, None, "B"), "at(site, S4):rep": (0.01442, 0.02602, "P"),
    "site": (10.45, 8.604, "P"), "gen:site": (0.1054, 0.05905, "P"),
    "at(site, S1):rep:block": (0.3312, 0.3341, "P"), "at(site, S2):rep:block": (0.4747, 0.1633, "P"),
    "at(site, S3):rep:block": (0.0, None, "B"), "at(site, S4):rep:block": (0.06954, 0.04264, "P"),
    "site_S1!R": (1.346, 0.3768, "P"), "site_S2!R": (0.1936, 0.06628, "P"),
    "site_S3!R": (1.153, 0.2349, "P"), "site_S4!R": (0.1112, 0.03665, "P"),
}


def test_damesa_maize_at_site_nested_and_dsum(damesa):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mvreml.errors.BoundaryWarning)
        res = mvreml.fit("yield ~ gen", random="~ site + gen:site + at(site):rep/block",
                         residual="~ dsum(~ units | site)", data=damesa)
    assert res.converged
    vc = res.varcomp
    assert sorted(vc.index) == sorted(DAMESA)
    for comp, (est, se, bound) in DAMESA.items():
        assert _sig3(vc.loc[comp, "estimate"], est), (comp, vc.loc[comp, "estimate"], est)
        assert vc.loc[comp, "bound"] == bound, comp
        if se is not None:   # SEs from the AI matrix at the optimum: within 1% of ASReml's
            assert vc.loc[comp, "std_error"] == pytest.approx(se, rel=0.01), comp
    assert res.covariance("site_S2").iloc[0, 0] == pytest.approx(vc.loc["site_S2!R", "estimate"])


def test_bridges_cucumber_m1_m2(cucumber):
    fixed = "yield ~ 1 + gen + loc + loc:gen"
    m1 = mvreml.fit(fixed, random="~ rowf:loc + colf:loc", data=cucumber)
    for comp, est, se in [("rowf:loc", 31.62, 23.02), ("colf:loc", 18.08, 15.32), ("units", 31.48, 12.85)]:
        assert _sig3(m1.varcomp.loc[comp, "estimate"], est), comp
        assert _sig3(m1.varcomp.loc[comp, "std_error"], se), comp
    assert m1.loglik_asreml == pytest.approx(-67.35585, abs=1e-3)
    m2 = mvreml.fit(fixed, random="~ at(loc):rowf + at(loc):colf", residual="~ dsum(~ units | loc)",
                    data=cucumber)
    published = [("at(loc, Clemson):rowf", 32.32, 36.58), ("at(loc, Tifton):rowf", 30.92, 28.63),
                 ("at(loc, Clemson):colf", 22.55, 28.78), ("at(loc, Tifton):colf", 13.62, 14.59),
                 ("loc_Clemson!R", 46.85, 27.05), ("loc_Tifton!R", 16.11, 9.299)]
    for comp, est, se in published:
        assert _sig3(m2.varcomp.loc[comp, "estimate"], est), comp
        assert _sig3(m2.varcomp.loc[comp, "std_error"], se), comp
    assert m2.loglik_asreml == pytest.approx(-66.35621, abs=1e-3)
    assert m2.n_varparams - m1.n_varparams == 3


# ---------------------------------------------------------------- dense checks
def _met_data(seed, n_site=3, n_gen=8, n_rep=2, traits=("y1",), drop=0.15, missing=0.0):
    """An unbalanced MET: sites x genotypes x reps (x blocks), some plots dropped."""
    rng = np.random.default_rng(seed)
    rows = [(f"S{s + 1}", f"G{g:02d}", f"R{r + 1}") for s in range(n_site) for g in range(n_gen)
            for r in range(n_rep)]
    df = pd.DataFrame(rows, columns=["site", "gen", "rep"])
    df = df[rng.random(len(df)) > drop].reset_index(drop=True)
    df["block"] = df["rep"] + "_" + rng.integers(0, 2, len(df)).astype(str)
    df["x"] = rng.standard_normal(len(df))
    for j, tr in enumerate(traits):
        y = rng.standard_normal(len(df)) * (1 + j) + df["site"].str[1:].astype(int) + 3 * j
        if missing:
            y[rng.random(len(df)) < missing] = np.nan
        df[tr] = y
    return df


def _pedigree(n_gen, seed):
    """Genotypes G00.. with parents among a few founders (F0..F3) and earlier genotypes."""
    rng = np.random.default_rng(seed)
    rows = [(f"F{i}", 0, 0) for i in range(4)]
    for g in range(n_gen):
        # males: F0, F1 and even genotypes; females: F2, F3 and odd ones
        sires = ["F0", "F1"] + [f"G{h:02d}" for h in range(0, g, 2)]
        dams = ["F2", "F3"] + [f"G{h:02d}" for h in range(1, g, 2)]
        rows.append((f"G{g:02d}", rng.choice(sires), rng.choice(dams)))
    return mvreml.Pedigree(pd.DataFrame(rows, columns=["animal", "sire", "dam"]))


def _model(df, fixed, random, residual, relmat=None, seed=0):
    fs = parse_fixed(fixed)
    rs = parse_random(random, fs.response)
    res = parse_residual(residual, fs.response)
    design = build_design(df, fs, rs, res, relmat=relmat)
    blocks = _blocks(design, res)
    model = REMLModel(design, blocks)
    rng = np.random.default_rng(seed + 7)
    theta = np.zeros(blocks[-1].stop)
    for b in blocks:
        t = b.structure.t
        A = rng.standard_normal((t, t))
        G = A @ A.T / t + np.eye(t) * rng.uniform(0.3, 1.0)
        th = b.structure.from_matrix(G)
        theta[b.slice] = th
    assert all(b.structure.feasible(theta[b.slice]) for b in blocks)
    return design, blocks, model, theta


MET_CASES = [
    # (data kwargs, fixed, random, residual, pedigree)
    (dict(), "y1 ~ site", "~ us(site):gen", "~ dsum(~ units | site)", False),
    (dict(), "y1 ~ site", "~ diag(site):gen + at(site):rep", "~ dsum(~ units | site)", False),
    (dict(), "y1 ~ site + x", "~ corgh(site):gen + site:rep", "~ units", False),
    (dict(n_site=4), "y1 ~ site", "~ corh(site):gen", "~ at(site):units", False),
    (dict(n_site=4), "y1 ~ site", "~ corv(site):gen + at(site, c(S1, S3)):rep", "~ units", False),
    (dict(n_site=4), "y1 ~ site", "~ fa(site, 1):gen", "~ dsum(~ units | site)", False),
    (dict(n_site=4, n_gen=10), "y1 ~ site", "~ fa(site, 2):gen + at(site, 2):block", "~ units", False),
    (dict(), "y1 ~ site", "~ at(site):rep/block + gen", "~ units:at(site)", False),
    (dict(n_gen=10), "y1 ~ site", "~ us(site):vm(gen, ped)", "~ dsum(~ units | site)", True),
    (dict(n_gen=10), "y1 ~ site", "~ fa(site, 1):vm(gen, ped) + ide(gen)", "~ units", True),
    # several traits: three-way products and trait matrices per section
    (dict(traits=("y1", "y2"), missing=0.1), "cbind(y1, y2) ~ trait + trait:site",
     "~ us(trait):diag(site):gen", "~ units:us(trait)", False),
    (dict(traits=("y1", "y2"), missing=0.1), "cbind(y1, y2) ~ trait + trait:site",
     "~ diag(site):us(trait):gen + diag(trait):rep", "~ dsum(~ units:us(trait) | site)", False),
    (dict(traits=("y1", "y2"), n_gen=10, missing=0.1), "cbind(y1, y2) ~ trait + trait:site",
     "~ us(trait):us(site):vm(gen, ped)", "~ dsum(~ units:diag(trait) | site)", True),
]


@pytest.mark.parametrize("case", range(len(MET_CASES)))
def test_met_structures_match_dense(case):
    kw, fixed, random, residual, with_ped = MET_CASES[case]
    df = _met_data(case, **kw)
    relmat = {"ped": _pedigree(df["gen"].nunique(), case)} if with_ped else None
    design, blocks, model, theta = _model(df, fixed, random, residual, relmat, seed=case)
    assert_engine_matches_dense(design, blocks, model, theta)


def test_z_of_a_three_way_product_from_the_data():
    """us(trait):diag(site):gen: Z maps a record (gen g, trait j, site s) to column
    g * (t * n_site) + j * n_site + s, built here from the data frame alone."""
    df = _met_data(1, traits=("y1", "y2"), missing=0.2)
    fs = parse_fixed("cbind(y1, y2) ~ trait")
    design = build_design(df, fs, parse_random("~ us(trait):diag(site):gen", fs.response),
                          parse_residual(None, fs.response))
    rd = design.random[0]
    sites, gens = sorted(df["site"].unique()), sorted(df["gen"].unique())
    expect = set()
    obs = 0
    for _, row in df.iterrows():
        for j, tr in enumerate(("y1", "y2")):
            if np.isnan(row[tr]):
                continue
            col = gens.index(row["gen"]) * 2 * len(sites) + j * len(sites) + sites.index(row["site"])
            expect.add((obs, col))
            obs += 1
    assert set(zip(rd.obs_rows.tolist(), rd.obs_cols.tolist())) == expect
    assert rd.comp_labels[:4] == ["y1:S1", "y1:S2", "y1:S3", "y2:S1"]


def test_at_expands_per_level_and_restricts_records():
    df = _met_data(2)
    fs = parse_fixed("y1 ~ site")
    design = build_design(df, fs, parse_random("~ at(site, 3):rep + at(site, c(S1, 'S2')):block", fs.response),
                          parse_residual(None, fs.response))
    assert [rd.name for rd in design.random] == ["at(site, S3):rep", "at(site, S1):block", "at(site, S2):block"]
    for rd, site in zip(design.random, ["S3", "S1", "S2"]):
        units = design.obs_unit[rd.obs_rows]
        assert set(df["site"].iloc[units]) == {site}
        assert len(rd.obs_rows) == int((df["site"] == site).sum())


# ---------------------------------------------------------------- fits
def _simulate_met(seed, n_site, n_gen, n_rep=2, k=2):
    """Genotype x site effects with an fa(k) covariance and heterogeneous residuals."""
    rng = np.random.default_rng(seed)
    L = rng.uniform(0.3, 1.2, (n_site, k))
    L[np.triu_indices(n_site, 1)[1][:0]] = 0
    for m in range(k):
        L[:m, m] = 0.0
    psi = rng.uniform(0.1, 0.4, n_site)
    G = L @ L.T + np.diag(psi)
    resid = rng.uniform(0.3, 1.0, n_site)
    U = rng.multivariate_normal(np.zeros(n_site), G, size=n_gen)
    rows = []
    for s in range(n_site):
        for g in range(n_gen):
            for r in range(n_rep):
                rows.append((f"S{s + 1:02d}", f"G{g:03d}", f"R{r + 1}",
                             5 + s + U[g, s] + rng.normal(0, np.sqrt(resid[s]))))
    df = pd.DataFrame(rows, columns=["site", "gen", "rep", "yield"])
    df["site"] = pd.Categorical(df["site"])
    return df, G, resid


def test_simulated_met_fa2_recovers_truth():
    df, G, resid = _simulate_met(11, n_site=8, n_gen=120)
    res = mvreml.fit("yield ~ site", random="~ fa(site, 2):gen", residual="~ dsum(~ units | site)", data=df)
    assert res.converged
    Ghat = res.covariance("fa(site, 2):gen").to_numpy()
    assert list(res.covariance("fa(site, 2):gen").index) == [f"S{s + 1:02d}" for s in range(8)]
    # sampling error with 120 genotypes: correlations of the matrices within a few tenths
    assert np.corrcoef(Ghat.ravel(), G.ravel())[0, 1] > 0.9
    rhat = [res.varcomp.loc[f"site_S{s + 1:02d}!R", "estimate"] for s in range(8)]
    np.testing.assert_allclose(rhat, resid, rtol=0.35)
    load = res.loadings("fa(site, 2):gen")
    assert load.shape == (8, 2) and load.iloc[0, 1] == 0.0


def test_fa_with_t_minus_1_factors_gives_the_us_loglik_and_us_equals_wide():
    df, _, _ = _simulate_met(5, n_site=3, n_gen=60)
    us = mvreml.fit("yield ~ site", random="~ us(site):gen", residual="~ dsum(~ units | site)", data=df)
    fa = mvreml.fit("yield ~ site", random="~ fa(site, 2):gen", residual="~ dsum(~ units | site)", data=df)
    assert fa.loglik == pytest.approx(us.loglik, abs=1e-4)
    # sites as traits: one row per genotype and rep
    wide = df.pivot_table(index=["gen", "rep"], columns="site", values="yield", observed=True).reset_index()
    wide.columns = [str(c) for c in wide.columns]
    w = mvreml.fit("cbind(S01, S02, S03) ~ trait", random="~ us(trait):gen", residual="~ units:diag(trait)",
                   data=wide)
    assert w.loglik == pytest.approx(us.loglik, abs=1e-6)
    np.testing.assert_allclose(w.covariance("gen").to_numpy(), us.covariance("site:gen").to_numpy(), rtol=1e-4)
    # the same likelihood, not only the same maximum: the wide model at the long fit's estimates
    # (parameters in the same order: G's lower triangle, then one residual variance per site)
    theta = us.varcomp["estimate"].to_numpy()
    assert w.mixed_model.loglik(theta) == pytest.approx(us.loglik, rel=1e-8, abs=0)


def test_product_holds_the_later_scale_at_one():
    df = _met_data(4, traits=("y1", "y2"), n_gen=12)
    res = mvreml.fit("cbind(y1, y2) ~ trait + trait:site", random="~ us(trait):diag(site):gen",
                     residual="~ units:us(trait)", data=df)
    vc = res.varcomp
    first = [lab for lab in vc.index if lab.endswith("!site_S1")]
    assert len(first) == 1 and vc.loc[first[0], "bound"] == "F" and vc.loc[first[0], "estimate"] == 1.0
    assert res.model["n_varparams"] == 3 + 2 + 3


# ---------------------------------------------------------------- bad input
def test_bad_met_input_is_named():
    df = _met_data(3)
    with pytest.raises(FormulaError, match=r"'S9' is not a level of 'site'; its levels are S1, S2, S3"):
        mvreml.fit("y1 ~ site", random="~ at(site, 'S9'):rep", data=df)
    with pytest.raises(FormulaError, match=r"at\(site, 7\).*3 levels"):
        mvreml.fit("y1 ~ site", random="~ at(site, 7):rep", data=df)
    with pytest.raises(DataError, match=r"us\(x\) needs a factor.*'x' is numeric"):
        mvreml.fit("y1 ~ site", random="~ us(x):gen", data=df)
    small = df[(df["site"] != "S3") | (df.index == df.index[df["site"] == "S3"][0])]
    with pytest.raises(DataError, match=r"residual section site='S3'.*1 record"):
        mvreml.fit("y1 ~ site", random="~ gen", residual="~ dsum(~ units | site)", data=small)
    with pytest.raises(FormulaError, match=r"fa\(site, 3\) on 3 levels of 'site'.*at most 2 factor"):
        mvreml.fit("y1 ~ site", random="~ fa(site, 3):gen", data=df)
    with pytest.raises(FormulaError, match="needs a vm\\(gen, relmat\\) term"):
        mvreml.fit("y1 ~ site", random="~ ide(gen)", data=df)


def test_butron_maize_fa1_on_a_pedigree_reaches_asreml(data_dir):
    """agridat butron.maize: the five models of its example, AIC as ASReml prints them; fa(env, 1)
    from the default start reaches ASReml's maximum."""
    dat = pd.read_csv(data_dir / "agridat" / "butron.maize.txt", sep="\t")
    ped = dat[["gen", "male", "female"]].drop_duplicates()
    groups = pd.DataFrame({"gen": ["Dent", "Flint"], "male": [0, 0], "female": [0, 0]})
    parents = ["A509", "A637", "A661", "CM105", "EP28", "EP31", "EP42", "F7", "PB60", "Z77016"]
    top = pd.DataFrame({"gen": parents, "male": ["Dent"] * 5 + ["Flint"] * 5,
                        "female": ["Dent"] * 5 + ["Flint"] * 5})
    ped = pd.concat([groups, top, ped]).fillna(0).rename(columns={"gen": "animal", "male": "sire",
                                                                   "female": "dam"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mvreml.errors.PedigreeWarning)
        P = mvreml.Pedigree(ped, allow_sire_dam=True)
    published = {"~ gen": (2, 229.4037), "~ vm(gen, ped)": (2, 213.2487),
                 "~ idv(env):vm(gen, ped)": (2, 290.6156), "~ diag(env):vm(gen, ped)": (6, 296.8061),
                 "~ fa(env, 1):vm(gen, ped)": (11, 218.1568)}
    for random, (df, aic) in published.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mvreml.errors.BoundaryWarning)
            res = mvreml.fit("yield ~ 1 + env", random=random, data=dat, relmat={"ped": P})
        assert res.converged, random
        assert res.n_varparams == df, random
        assert -2 * res.loglik_asreml + 2 * df == pytest.approx(aic, abs=2e-3), random


def test_pairwise_init_says_it_is_for_traits():
    df = _met_data(6)
    with pytest.raises(mvreml.errors.StartingValueError, match="does not apply to structures on other factors"):
        mvreml.fit("y1 ~ site", random="~ fa(site, 1):gen", data=df, init="pairwise")


@pytest.mark.parametrize("n_site, random", [(8, "~ us(site):gen"), (14, "~ fa(site, 1):gen")])
def test_line_search_candidates_by_loglik_alone_give_the_same_fit(monkeypatch, n_site, random):
    """A candidate is compared by log L alone; the one accepted gets its score and AI from the
    factor it left (REMLModel.complete). The fit is the same, bit for bit, as when every candidate
    is evaluated with its derivatives, with one computation of the derivatives per iteration (and
    the start) instead of one per factorization. 14 sites take the fa factor formulation."""
    from mvreml import fa_sparse
    from mvreml.likelihood import REMLModel

    df = _met_data(n_site, n_site=n_site, n_gen=12)
    counts = {"fact": 0, "deriv": 0, "inner": 0}
    fact = REMLModel._factorize

    def counted_fact(self, C):
        counts["fact"] += 1
        return fact(self, C)

    monkeypatch.setattr(REMLModel, "_factorize", counted_fact)
    for cls, name in ((REMLModel, "_derivatives"), (fa_sparse.FactorREMLModel, "_inner_derivatives")):
        def counted(self, *a, _f=getattr(cls, name), _inner=cls is fa_sparse.FactorREMLModel, **kw):
            counts["deriv"] += 1
            counts["inner"] += _inner
            return _f(self, *a, **kw)
        monkeypatch.setattr(cls, name, counted)

    def fit():
        counts.update(fact=0, deriv=0, inner=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mvreml.fit("y1 ~ site", random=random, residual="~ dsum(~ units | site)", data=df)
        return res, dict(counts)

    lazy, n_lazy = fit()
    assert (n_lazy["inner"] > 0) == (n_site >= 12)      # the factor formulation from 12 sites
    for cls in (REMLModel, fa_sparse.FactorREMLModel):
        ev = cls.evaluate
        monkeypatch.setattr(cls, "evaluate", lambda self, theta, derivatives=True, _ev=ev: _ev(self, theta, True))
    eager, n_eager = fit()
    assert lazy.loglik == eager.loglik
    np.testing.assert_array_equal(lazy.varcomp["estimate"].to_numpy(), eager.varcomp["estimate"].to_numpy())
    assert list(lazy.history["step"]) == list(eager.history["step"])
    assert n_lazy["fact"] == n_eager["fact"]
    assert n_eager["deriv"] == n_eager["fact"]
    # rejected or superseded candidates (halvings, the full step before a damped one) cost a
    # factorization only; the derivatives: the start, each iteration, a release, the polish
    assert n_lazy["deriv"] < n_lazy["fact"]
    assert n_lazy["deriv"] <= lazy.iterations + 3


def test_a_candidate_evaluated_without_derivatives_is_freed_at_once():
    """The pending derivatives of a line-search candidate do not hold the candidate itself (no
    reference cycle): a rejected candidate's arrays are freed when it is dropped, not when the
    cyclic collector runs; completing a candidate that is no longer the last one evaluates again."""
    import gc
    import weakref

    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    n, q = 300, 40
    Z = sp.csr_matrix((np.ones(n), (np.arange(n), rng.integers(0, q, n))), shape=(n, q))
    y = Z @ rng.standard_normal(q) + rng.standard_normal(n)
    model = mvreml.Model(y, np.ones((n, 1)), random=[mvreml.Random(Z, mvreml.structures.Idv(1), name="g")])
    reml = model._reml
    theta = np.array([0.5, 1.0])
    gc.disable()
    try:
        ev = reml.evaluate(theta, derivatives=False)
        assert ev.score is None and ev.pending is not None
        ref = weakref.ref(ev)
        del ev
        assert ref() is None
    finally:
        gc.enable()
    first = reml.evaluate(theta, derivatives=False)
    reml.evaluate(theta * 1.1, derivatives=False)           # the factor now belongs to another point
    done = reml.complete(first)
    full = reml.evaluate(theta)
    np.testing.assert_allclose(done.score, full.score, rtol=1e-12)
    np.testing.assert_allclose(done.ai, full.ai, rtol=1e-12)
    assert done.loglik == pytest.approx(full.loglik, rel=1e-14)
