"""predict(classify=): asreml-R's predictions with standard errors and SEDs.

The references: the published asreml-R predictions of agridat's bridges.cucumber (SOURCE.md),
and a dense computation in this file of L'[b; u] and L' C^-1 L with C built from X, Z, G and R
made here from the data (dummies of the factors, the fitted variances), not by the engine.
"""
import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.errors import ArgumentError, ModelError, TermError
from mvreml.predict import Predictions


# ---------------------------------------------------------------------- dense reference
def dummies(values, levels=None):
    values = np.asarray(values).astype(str)
    levels = sorted(set(values)) if levels is None else levels
    return np.equal.outer(values, np.asarray(levels, dtype=str)).astype(float), levels


def dense_predict(X, Zs, Gs, Rinv, y, Lx, Lzs):
    """(predictions, their covariance) from the dense MME C [b; u] = W'R^-1 y."""
    W = np.hstack([X] + Zs)
    p = X.shape[1]
    C = W.T @ Rinv @ W
    o = p
    for Z, G in zip(Zs, Gs):
        n = Z.shape[1]
        C[o:o + n, o:o + n] += np.linalg.inv(G)
        o += n
    Cinv = np.linalg.inv(C)
    sol = Cinv @ (W.T @ Rinv @ y)
    L = np.hstack([Lx] + Lzs)
    return L @ sol, L @ Cinv @ L.T


def sed_of(V):
    dv = np.diag(V)
    return np.sqrt(np.clip(dv[:, None] + dv[None, :] - 2 * V, 0, None))


def check(table, pred, V, rtol=1e-6):
    assert (table["status"] == "estimable").all()
    np.testing.assert_allclose(table["predicted_value"], pred, rtol=rtol, atol=1e-8)
    np.testing.assert_allclose(table["std_error"], np.sqrt(np.diag(V)), rtol=rtol, atol=1e-10)


# ---------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def trial():
    """3 sites x 20 genotypes x 3 reps, unbalanced (one rep of 8 cells dropped), a covariate x,
    a second trait y2 with missing values; components well inside the parameter space."""
    rng = np.random.default_rng(7)
    gens = [f"G{i:02d}" for i in range(1, 21)]
    rows = [(s, g, r) for s in ("S1", "S2", "S3") for g in gens for r in ("1", "2", "3")]
    d = pd.DataFrame(rows, columns=["site", "gen", "rep"])
    d["x"] = rng.normal(size=len(d))
    si = d["site"].str[1].astype(int).to_numpy() - 1
    gi = d["gen"].str[1:].astype(int).to_numpy() - 1
    ri = d["rep"].astype(int).to_numpy() - 1
    G0 = np.array([[2.0, 1.0, 0.6], [1.0, 3.0, 0.8], [0.6, 0.8, 1.6]])
    gxe = np.linalg.cholesky(G0) @ rng.normal(size=(3, 20))
    rep_eff = rng.normal(scale=1.0, size=(3, 3))
    noise = rng.normal(size=len(d)) * np.array([0.5, 1.0, 1.5])[si]
    d["y"] = 10 + 2 * si + 0.5 * d["x"] + gxe[si, gi] + rep_eff[si, ri] + noise
    d["y2"] = 0.5 * d["y"] + rng.normal(size=20)[gi] + rng.normal(size=len(d))
    d.loc[::7, "y2"] = np.nan
    drop = rng.choice(np.flatnonzero(d["rep"] == "3"), 8, replace=False)     # every cell keeps plots
    return d.drop(index=drop).reset_index(drop=True)


@pytest.fixture(scope="module")
def cucumber(data_dir):
    d = pd.read_csv(data_dir / "agridat" / "bridges.cucumber.csv")
    d["rowf"] = d["row"].astype(str)
    d["colf"] = d["col"].astype(str)
    return d


# ---------------------------------------------------------------------- published
def test_bridges_cucumber_m2_loc_gen_predictions_as_published(cucumber):
    res = mvreml.fit("yield ~ 1 + gen + loc + loc:gen", "~ at(loc):rowf + at(loc):colf",
                     "~ dsum(~ units | loc)", data=cucumber)
    assert res.loglik_asreml == pytest.approx(-66.35621, abs=5e-5)
    p = res.predict(classify="loc:gen")
    assert list(p.columns) == ["loc", "gen", "predicted_value", "std_error", "status"]
    assert list(zip(p["loc"], p["gen"])) == [(loc, g) for loc in ("Clemson", "Tifton")
                                             for g in ("Dasher", "Guardian", "Poinsett", "Sprint")]
    # SOURCE.md, printed to 3 significant digits
    published = [45.6, 31.6, 21.4, 26.0, 50.5, 38.7, 33.0, 39.2]
    se = [5.04] * 4 + [3.89] * 4
    assert np.all(np.abs(p["predicted_value"].to_numpy() - published) <= 0.05 + 1e-9)
    assert np.all(np.abs(p["std_error"].to_numpy() - se) <= 0.005)
    assert (p["status"] == "estimable").all()
    # the row / column effects involve rowf / colf, which are not classified: left out
    assert not any("rowf" in t or "colf" in t for t in p.attrs["terms"])


# ---------------------------------------------------------------------- dense checks
def _model_a(trial):
    return mvreml.fit("y ~ site + x", "~ gen + site:rep", data=trial)


def _dense_a(trial, res):
    y = trial["y"].to_numpy()
    S, sites = dummies(trial["site"])
    X = np.column_stack([np.ones(len(y)), S[:, 1:], trial["x"]])
    Zg, gens = dummies(trial["gen"])
    Zsr, srs = dummies(trial["site"] + ":" + trial["rep"])
    vg = res.covariance("gen").iloc[0, 0]
    vsr = res.covariance("site:rep").iloc[0, 0]
    ve = res.covariance("units").iloc[0, 0]
    Gs = [vg * np.eye(len(gens)), vsr * np.eye(len(srs))]
    return y, X, [Zg, Zsr], Gs, np.eye(len(y)) / ve, sites, gens, srs


def test_gen_predictions_average_sites_take_x_at_its_mean_and_include_gen_blups(trial):
    res = _model_a(trial)
    y, X, Zs, Gs, Rinv, sites, gens, srs = _dense_a(trial, res)
    xbar = trial["x"].mean()
    k = len(gens)
    Lx = np.tile(np.r_[1.0, np.full(len(sites) - 1, 1 / len(sites)), xbar], (k, 1))
    pred, V = dense_predict(X, Zs, Gs, Rinv, y, Lx, [np.eye(k), np.zeros((k, len(srs)))])
    out = res.predict(classify="gen", sed=True)
    assert isinstance(out, Predictions)
    check(out.pvals, pred, V)
    S = sed_of(V)
    np.fill_diagonal(S, np.nan)
    np.testing.assert_allclose(out.sed.to_numpy(), S, rtol=1e-6)
    iu = np.triu_indices(k, 1)
    assert out.avsed["mean"] == pytest.approx(S[iu].mean(), rel=1e-6)
    assert out.avsed["min"] == pytest.approx(S[iu].min(), rel=1e-6)
    assert out.avsed["max"] == pytest.approx(S[iu].max(), rel=1e-6)
    assert out.pvals.attrs["averaged"] == ["site"]
    assert out.pvals.attrs["covariates_at_mean"] == ["x"]


def test_random_terms_of_unclassified_variables_are_left_out_unless_averaged(trial):
    res = _model_a(trial)
    y, X, Zs, Gs, Rinv, sites, gens, srs = _dense_a(trial, res)
    xbar = trial["x"].mean()
    ns = len(sites)
    Lx = np.column_stack([np.ones(ns), np.eye(ns)[:, 1:], np.full(ns, xbar)])
    # gen appears only in a random term: not averaged, its BLUPs left out
    pred, V = dense_predict(X, Zs, Gs, Rinv, y, Lx, [np.zeros((ns, len(gens))), np.zeros((ns, len(srs)))])
    check(res.predict(classify="site"), pred, V)
    # average=["rep"]: site:rep now lies in classify + averaging set, averaged over the reps
    nr = trial["rep"].nunique()
    Lsr = np.array([[1 / nr if lv.split(":")[0] == s else 0.0 for lv in srs] for s in sites])
    pred, V = dense_predict(X, Zs, Gs, Rinv, y, Lx, [np.zeros((ns, len(gens))), Lsr])
    check(res.predict(classify="site", average=["rep"]), pred, V)
    # site:gen: the gen BLUPs enter (made only of classify variables), site:rep does not
    Lx2 = np.repeat(Lx, len(gens), axis=0)
    Lg = np.tile(np.eye(len(gens)), (ns, 1))
    pred, V = dense_predict(X, Zs, Gs, Rinv, y, Lx2, [Lg, np.zeros((ns * len(gens), len(srs)))])
    check(res.predict(classify="site:gen"), pred, V)
    # ignore= removes an included term
    pred, V = dense_predict(X, Zs, Gs, Rinv, y, Lx2, [0 * Lg, np.zeros((ns * len(gens), len(srs)))])
    check(res.predict(classify="site:gen", ignore=["gen"]), pred, V)


def test_met_us_site_gen_predictions_and_seds_match_dense(trial):
    res = mvreml.fit("y ~ site", "~ us(site):gen", "~ dsum(~ units | site)", data=trial)
    y = trial["y"].to_numpy()
    S, sites = dummies(trial["site"])
    X = np.column_stack([np.ones(len(y)), S[:, 1:]])
    Zg, gens = dummies(trial["gen"])
    ns, ng = len(sites), len(gens)
    # Z of us(site):gen, columns gen-major: (gen g, site s) at g * ns + s
    Z = np.einsum("ig,is->igs", Zg, S).reshape(len(y), ng * ns)
    G = np.kron(np.eye(ng), res.covariance("site:gen").to_numpy())
    rvar = np.array([res.covariance(f"site_{s}").iloc[0, 0] for s in sites])
    Rinv = np.diag(1.0 / (S @ rvar))
    Lx = np.column_stack([np.ones(ns), np.eye(ns)[:, 1:]])
    # site:gen: row (s, g), site slowest as asreml lists them
    Lxs = np.repeat(Lx, ng, axis=0)
    Lz = np.zeros((ns * ng, ng * ns))
    for s in range(ns):
        for g in range(ng):
            Lz[s * ng + g, g * ns + s] = 1.0
    pred, V = dense_predict(X, [Z], [G], Rinv, y, Lxs, [Lz])
    out = res.predict(classify="site:gen", sed=True)
    check(out.pvals, pred, V)
    Sd = sed_of(V)
    np.fill_diagonal(Sd, np.nan)
    np.testing.assert_allclose(out.sed.to_numpy(), Sd, rtol=1e-6)
    # gen: averaged over the sites, the GxE BLUPs too (site is in the averaging set)
    Lx1 = np.tile(Lx.mean(axis=0), (ng, 1))
    Lz1 = np.kron(np.eye(ng), np.full((1, ns), 1 / ns))
    pred, V = dense_predict(X, [Z], [G], Rinv, y, Lx1, [Lz1])
    check(res.predict(classify="gen"), pred, V)


def test_multivariate_trait_gen_predictions_match_dense(trial):
    res = mvreml.fit("cbind(y, y2) ~ trait + trait:site", "~ us(trait):gen", data=trial)
    Y = trial[["y", "y2"]].to_numpy()
    unit, tr = np.nonzero(~np.isnan(Y))          # long format, unit-major, trait-minor
    y = Y[unit, tr]
    S, sites = dummies(trial["site"])
    Zg, gens = dummies(trial["gen"])
    ns, ng, n = len(sites), len(gens), len(y)
    T = np.eye(2)[tr]
    # per-trait intercept and site effects (treatment contrasts)
    X = np.column_stack([T[:, [0]], T[:, [0]] * S[unit, 1:], T[:, [1]], T[:, [1]] * S[unit, 1:]])
    Z = np.einsum("ig,it->igt", Zg[unit], T).reshape(n, ng * 2)
    G = np.kron(np.eye(ng), res.covariance("gen").to_numpy())
    R0 = res.covariance("units").to_numpy()
    R = np.zeros((n, n))
    for u in np.unique(unit):
        idx = np.flatnonzero(unit == u)
        R[np.ix_(idx, idx)] = R0[np.ix_(tr[idx], tr[idx])]
    Rinv = np.linalg.inv(R)
    rows_x, rows_z = [], []
    for t in range(2):
        for g in range(ng):
            lx = np.zeros(2 * ns)
            lx[t * ns] = 1.0
            lx[t * ns + 1:(t + 1) * ns] = 1.0 / ns
            lz = np.zeros(ng * 2)
            lz[g * 2 + t] = 1.0
            rows_x.append(lx)
            rows_z.append(lz)
    pred, V = dense_predict(X, [Z], [G], Rinv, y, np.array(rows_x), [np.array(rows_z)])
    out = res.predict(classify="trait:gen", sed=True)
    check(out.pvals, pred, V)
    assert list(out.pvals["trait"][:2]) == ["y", "y"]
    Sd = sed_of(V)
    np.fill_diagonal(Sd, np.nan)
    np.testing.assert_allclose(out.sed.to_numpy(), Sd, rtol=1e-6)


# ---------------------------------------------------------------------- estimability
@pytest.fixture(scope="module")
def empty_cell(trial):
    """site * gen with the cell (S3, G02) empty."""
    d = trial[~((trial["site"] == "S3") & (trial["gen"] == "G02"))].reset_index(drop=True)
    return mvreml.fit("y ~ site + gen + site:gen", "~ site:rep", data=d)


def test_an_empty_cell_is_marked_not_estimable_not_averaged(empty_cell):
    cells = empty_cell.predict(classify="site:gen")
    bad = (cells["site"] == "S3") & (cells["gen"] == "G02")
    assert cells.loc[bad, "status"].iloc[0].startswith("not estimable: aliased with")
    assert "S3" in cells.loc[bad, "status"].iloc[0] and "G02" in cells.loc[bad, "status"].iloc[0]
    assert np.isnan(cells.loc[bad, "predicted_value"]).all() and np.isnan(cells.loc[bad, "std_error"]).all()
    assert (cells.loc[~bad, "status"] == "estimable").all()
    assert np.isfinite(cells.loc[~bad, "predicted_value"]).all()
    gens = empty_cell.predict(classify="gen")
    assert gens.set_index("gen").loc["G02", "status"].startswith("not estimable")
    assert (gens.set_index("gen").drop(index="G02")["status"] == "estimable").all()


def test_present_averages_over_the_cells_with_data(empty_cell):
    cells = empty_cell.predict(classify="site:gen", sed=True)
    gens = empty_cell.predict(classify="gen", present=["site", "gen"])
    g2 = gens.set_index("gen").loc["G02"]
    assert g2["status"] == "estimable"
    mine = cells.pvals[(cells.pvals["gen"] == "G02") & (cells.pvals["site"] != "S3")]
    assert g2["predicted_value"] == pytest.approx(mine["predicted_value"].mean(), rel=1e-9)
    # var((a + b) / 2) = (var a + var b + 2 cov) / 4, cov from the SED of the pair
    va, vb = mine["std_error"].to_numpy() ** 2
    sab = cells.sed.loc["S1:G02", "S2:G02"]
    cov = (va + vb - sab ** 2) / 2
    assert g2["std_error"] == pytest.approx(np.sqrt((va + vb + 2 * cov) / 4), rel=1e-6)
    # a genotype with all three sites: averaged over all three
    g1 = gens.set_index("gen").loc["G01", "predicted_value"]
    assert g1 == pytest.approx(cells.pvals[cells.pvals["gen"] == "G01"]["predicted_value"].mean(), rel=1e-9)


def test_average_weights(empty_cell):
    w = [0.5, 0.25, 0.25]
    cells = empty_cell.predict(classify="site:gen")
    gens = empty_cell.predict(classify="gen", average={"site": w}).set_index("gen")
    g1 = cells[cells["gen"] == "G01"]["predicted_value"].to_numpy()
    assert gens.loc["G01", "predicted_value"] == pytest.approx(float(np.dot(w, g1)), rel=1e-9)
    with pytest.raises(ArgumentError, match="sum to 1"):
        empty_cell.predict(classify="gen", average={"site": [0.5, 0.5, 0.5]})


# ---------------------------------------------------------------------- bad input, lifecycle
def test_bad_classify_names_the_variable(trial):
    res = _model_a(trial)
    with pytest.raises(ArgumentError, match="'variety'.*not a variable of the model"):
        res.predict(classify="site:variety")
    with pytest.raises(ArgumentError, match="'x' is a covariate"):
        res.predict(classify="x")
    with pytest.raises(TermError, match="'site:gen'"):
        res.predict(classify="gen", ignore=["site:gen"])
    with pytest.raises(ArgumentError, match="levels"):
        res.predict(classify="gen", levels={"gen": ["G99"]})
    with pytest.raises(ArgumentError, match="not in classify"):
        res.predict(classify="gen", levels={"site": ["S1"]})
    with pytest.raises(ModelError, match="either L or classify"):
        res.predict(np.ones((1, len(res.fixef))), classify="gen")


def test_levels_restrict_the_table(trial):
    res = _model_a(trial)
    full = res.predict(classify="gen").set_index("gen")
    part = res.predict(classify="gen", levels={"gen": ["G04", "G02"]}).set_index("gen")
    assert list(part.index) == ["G04", "G02"]
    np.testing.assert_allclose(part["predicted_value"], full.loc[["G04", "G02"], "predicted_value"], rtol=1e-12)


def test_predictions_are_at_the_reported_theta_whatever_factor_is_held(trial):
    res = _model_a(trial)
    before = res.predict(classify="gen")
    model, theta = res._fitted
    model.evaluate(theta * 3.0, derivatives=False)      # leave the factor of another point behind
    assert not model.factorized_at(theta)
    after = res.predict(classify="gen")
    np.testing.assert_allclose(after["predicted_value"], before["predicted_value"], rtol=1e-12)
    np.testing.assert_allclose(after["std_error"], before["std_error"], rtol=1e-12)


def test_a_result_read_from_json_says_it_needs_the_fitted_model(trial):
    res = _model_a(trial)
    back = mvreml.Result.from_json(res.to_json())
    assert "_fitted" not in res.to_json()
    with pytest.raises(ModelError, match="needs the fitted model"):
        back.predict(classify="gen")
    # fixed-effect contrasts from the stored tables still work
    L = pd.Series({"(Intercept)": 1.0})
    assert back.predict(L)["estimate"].iloc[0] == pytest.approx(res.fixef["estimate"].iloc[0])


def test_overall_mean(trial):
    res = _model_a(trial)
    mean = res.predict(classify="(Intercept)")
    gens = res.predict(classify="gen")
    # the gen BLUPs are not in an intercept prediction; the fixed part is the genotype average's
    assert mean["predicted_value"].iloc[0] == pytest.approx(
        gens["predicted_value"].mean() - res.blup("gen")["y"].mean(), rel=1e-9)


def test_a_pickled_result_leaves_the_fitted_model_behind(trial):
    import pickle

    res = _model_a(trial)
    back = pickle.loads(pickle.dumps(res))
    assert back.loglik == res.loglik
    with pytest.raises(ModelError, match="needs the fitted model"):
        back.predict(classify="gen")


def test_spatial_residual_with_missing_plots_leaves_their_mv_effects_out(data_dir):
    df = pd.read_csv(data_dir / "agridat" / "gilmour.slatehall.csv")
    df = df.assign(xf=df["col"], yf=df["row"], rowf=df["row"].astype(str), colf=df["col"].astype(str))
    d = df.drop(index=[3, 40, 77]).reset_index(drop=True)        # three missing plots in the grid
    res = mvreml.fit("yield ~ gen + row", random="~ rowf + colf", residual="~ ar1(xf):ar1(yf)", data=d)
    assert res._fitted[0].design.n_missing_plots == 3
    p = res.predict(classify="gen").set_index("gen")
    b = res.fixef["estimate"]
    # gen's prediction: intercept + its effect + the row slope at the mean row of the data
    for g in ("G01", "G02", "G25"):
        expect = b["(Intercept)"] + b.get(f"gen[T.{g}]", 0.0) + b["row"] * d["row"].mean()
        assert p.loc[g, "predicted_value"] == pytest.approx(expect, rel=1e-10)
    L = pd.DataFrame(0.0, index=["G25"], columns=[c for c in res.fixef.index if not c.startswith("mv_")])
    L.loc["G25", ["(Intercept)", "gen[T.G25]"]] = 1.0
    L.loc["G25", "row"] = d["row"].mean()
    assert p.loc["G25", "std_error"] == pytest.approx(res.predict(L)["std_error"].iloc[0], rel=1e-8)
