"""AR1 structures as random terms (mvreml.ar1_levels), the nugget beside a lattice residual and
dsum of different spatial structures per section, against a dense V built from the data alone:
every covariance written as a function of two records' positions (rho^|row_a - row_b| ...),
restricted to the observed plots; log L to 1e-8, the score against finite differences of that
dense log L, the AI matrix against 1/2 F'PF with F = [dV_j P y]."""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.api import _blocks
from mvreml.design import build_design
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.likelihood import REMLModel


def _field(seed, n_col=4, n_row=7, holes=3, nan=2, sites=("S1",), gens=5):
    rng = np.random.default_rng(seed)
    rows = [(site, c, r) for s, site in enumerate(sites) for c in range(1, n_col + 1 + s)
            for r in range(1, n_row + 1)]
    df = pd.DataFrame(rows, columns=["site", "col", "row"])
    df = df.drop(index=rng.choice(len(df), holes, replace=False)).reset_index(drop=True)
    df["gen"] = rng.integers(0, gens, len(df)).astype(str)
    df["x"] = rng.standard_normal(len(df))
    df["y"] = rng.standard_normal(len(df)) + 0.2 * np.sin(df["row"]) + (df["site"] != "S1") * 1.5
    df["z"] = 0.5 * df["y"] + rng.standard_normal(len(df))
    df.loc[rng.choice(len(df), nan, replace=False), "y"] = np.nan
    return df


def _ar1(x, rho):
    x = np.asarray(x, float)
    return rho ** np.abs(x[:, None] - x[None, :])


def _same(x):
    x = np.asarray(x)
    return (x[:, None] == x[None, :]).astype(float)


def _lattice_R(obs, sec, sigma2, kinds, rhos):
    """sigma^2 (x)_d S_d over the section's complete lattice, restricted to its observed plots:
    as a covariance function, sigma^2 prod_d rho_d^|p_a - p_b| (ar1) or [p_a == p_b] (id)."""
    R = sigma2 * np.ones((len(obs), len(obs)))
    it = iter(rhos)
    for col, kind in kinds:
        R = R * (_ar1(obs[col], next(it)) if kind == "ar1" else _same(obs[col]))
    inside = np.ones(len(obs), bool) if sec is None else (obs["site"] == sec).to_numpy()
    return R * np.outer(inside, inside)


# each case: data, fixed, random, residual, and V(obs, theta by block) written from the data
def _v_ar1v_col(obs, th):
    g, r = th[0]
    return g * _ar1(obs["row"], r) * _same(obs["col"]) + th[1][0] * _same(obs["gen"]) + th[2][0] * np.eye(len(obs))


def _v_trend(obs, th):
    g, rr, rc = th[0]
    return g * _ar1(obs["row"], rr) * _ar1(obs["col"], rc) + th[1][0] * np.eye(len(obs))


def _v_at_site(obs, th):
    V = th[2][0] * _same(obs["gen"]) + th[3][0] * np.eye(len(obs))
    for (g, r), s in zip(th[:2], ("S1", "S2")):
        m = (obs["site"] == s).to_numpy()
        V += g * _ar1(obs["row"], r) * np.outer(m, m)
    return V


def _v_ar1h(obs, th):
    rho, *v = th[0]
    lo = obs["row"].min()
    sd = np.sqrt(np.asarray(v))[obs["row"].to_numpy() - lo]
    return np.outer(sd, sd) * _ar1(obs["row"], rho) * _same(obs["col"]) + th[1][0] * np.eye(len(obs))


def _v_diag_site_ar1h(obs, th):
    v1, v2, rho, _, *w = th[0]          # diag(site) carries the scale: ar1h's first variance is 1
    lo = obs["row"].min()
    sd = np.sqrt(np.r_[1.0, w])[obs["row"].to_numpy() - lo]
    vs = np.where(obs["site"] == "S1", v1, v2)
    site = _same(obs["site"]) * np.sqrt(np.outer(vs, vs))
    return site * np.outer(sd, sd) * _ar1(obs["row"], rho) + th[1][0] * np.eye(len(obs))


def _v_nugget_trend_lattice(obs, th):
    g, rr, rc = th[1]
    return (th[0][0] * np.eye(len(obs)) + g * _ar1(obs["row"], rr) * _ar1(obs["col"], rc)
            + _lattice_R(obs, None, th[2][0], [("col", "ar1"), ("row", "ar1")], th[2][1:]))


def _v_dsum_levels(obs, th):
    V = th[0][0] * _same(obs["gen"])
    V += _lattice_R(obs, "S1", th[1][0], [("col", "ar1"), ("row", "ar1")], th[1][1:])
    V += _lattice_R(obs, "S2", th[2][0], [("col", "ar1"), ("row", "ar1")], th[2][1:])
    V += _lattice_R(obs, "S3", th[3][0], [("col", "id"), ("row", "ar1")], th[3][1:])
    return V


def _v_dsum_named(obs, th):
    V = th[0][0] * _same(obs["gen"])
    V += _lattice_R(obs, "S1", th[1][0], [("col", "id"), ("row", "ar1")], th[1][1:])
    V += _lattice_R(obs, "S2", th[2][0], [("col", "ar1"), ("row", "ar1")], th[2][1:])
    return V


def _v_nugget_lattice(obs, th):
    return (th[0][0] * np.eye(len(obs)) + th[1][0] * _same(obs["gen"])
            + _lattice_R(obs, None, th[2][0], [("col", "ar1"), ("row", "ar1")], th[2][1:]))


CASES = {
    "ar1v(row):id(col)": (dict(), "y ~ 1 + x", "~ ar1v(row):id(col) + gen", None, _v_ar1v_col),
    "ar1(row):ar1(col) trend": (dict(), "y ~ 1", "~ ar1(row):ar1(col)", None, _v_trend),
    "at(site):ar1v(row)": (dict(sites=("S1", "S2"), holes=4), "y ~ site", "~ at(site):ar1v(row) + gen",
                           None, _v_at_site),
    "ar1h(row):col": (dict(n_row=5), "y ~ 1", "~ ar1h(row):col", None, _v_ar1h),
    "diag(site):ar1h(row)": (dict(sites=("S1", "S2"), n_row=4), "y ~ site", "~ diag(site):ar1h(row)", None,
                             _v_diag_site_ar1h),
    "nugget + trend + lattice": (dict(holes=2), "y ~ 1", "~ units + ar1(row):ar1(col)", "~ ar1(col):ar1(row)",
                                 _v_nugget_trend_lattice),
    "nugget + lattice": (dict(), "y ~ 1 + x", "~ units + gen", "~ ar1(col):ar1(row)", _v_nugget_lattice),
    "dsum levels by position": (dict(sites=("S1", "S2", "S3"), holes=5, nan=3), "y ~ site", "~ gen",
                                "~ dsum(~ ar1(col):ar1(row) + id(col):ar1(row) | site, levels = list(1:2, 3))",
                                _v_dsum_levels),
    "dsum levels by name": (dict(sites=("S1", "S2"), holes=4), "y ~ site", "~ gen",
                            '~ dsum(~ id(col):ar1(row) + ar1(col):ar1(row) | site, levels = list("S1", "S2"))',
                            _v_dsum_named),
}


def _model(df, fixed, random, residual):
    fs = parse_fixed(fixed)
    res = parse_residual(residual, fs.response)
    design = build_design(df, fs, parse_random(random, fs.response), res)
    blocks = _blocks(design, res)
    return design, blocks, REMLModel(design, blocks)


def _theta(blocks, seed):
    rng = np.random.default_rng(seed)
    theta = np.zeros(blocks[-1].stop)
    for b in blocks:
        th = np.asarray(b.structure.from_matrix(np.array([[rng.uniform(0.5, 2.0)]]) if b.structure.t == 1
                                                else np.eye(b.structure.t)), float)
        for i, kind in enumerate(b.structure.kinds()):
            fixed = b.structure.fixed_params()[i]
            if kind == "correlation":
                th[i] = rng.uniform(-0.6, 0.8)
            elif kind == "variance" and not fixed:
                th[i] = rng.uniform(0.5, 2.0)
        theta[b.slice] = th
    return theta


def _dense(df, design, blocks, Vfun):
    """theta -> (log L, P, V) of the observed records from Vfun alone."""
    obs = df[df["y"].notna()].reset_index(drop=True)
    n = len(obs)
    assert n == design.n_obs - design.n_missing_plots
    X = design.X.toarray()[:n]
    X = X[:, [j for j, name in enumerate(design.fixef_names) if not name.startswith("mv_")]]
    y = obs["y"].to_numpy()

    def V_of(theta):
        return Vfun(obs, [theta[b.slice] for b in blocks])

    def loglik(theta):
        V = V_of(theta)
        Vi = np.linalg.inv(V)
        XtViX = X.T @ Vi @ X
        P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
        N, p = X.shape
        return -0.5 * ((N - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1]
                       + y @ P @ y), P

    return loglik, V_of, y


@pytest.mark.parametrize("case", list(CASES))
def test_ar1_terms_match_dense(case):
    kw, fixed, random, residual, Vfun = CASES[case]
    seed = list(CASES).index(case)
    df = _field(seed, **kw)
    design, blocks, model = _model(df, fixed, random, residual)
    theta = _theta(blocks, seed)
    ev = model.evaluate(theta)
    loglik, V_of, y = _dense(df, design, blocks, Vfun)
    ll, P = loglik(theta)
    assert ev.loglik == pytest.approx(ll, rel=1e-8)
    free = ~np.concatenate([b.structure.fixed_params() for b in blocks])
    fd = np.zeros_like(theta)
    F = np.zeros((len(y), len(theta)))
    Py = P @ y
    for i in np.flatnonzero(free):
        h = 1e-5 * max(abs(theta[i]), 1e-2)
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        fd[i] = (loglik(tp)[0] - loglik(tm)[0]) / (2 * h)
        F[:, i] = (V_of(tp) - V_of(tm)) / (2 * h) @ Py
    np.testing.assert_allclose(ev.score[free], fd[free], rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    ai = 0.5 * F.T @ P @ F
    np.testing.assert_allclose(ev.ai[np.ix_(free, free)], ai[np.ix_(free, free)], rtol=1e-5,
                               atol=1e-7 * np.abs(ai).max())


def test_ar1_term_gaps_are_positions_and_labels():
    """A row without records is a position (rho^2 between its neighbours), as in the residual."""
    df = _field(11, holes=0, nan=0)
    df = df[df["row"] != 4].reset_index(drop=True)
    design, _, _ = _model(df, "y ~ 1", "~ ar1v(row):id(col)", None)
    rd = design.random[0]
    assert rd.kcor.dims[0][2] == 7 and rd.q == 4 * 7
    assert list(rd.levels[:3]) == ["1:1", "1:2", "1:3"]      # col:row, the plain factor slowest
    K = rd.kcor.matrix([0.5])
    a = rd.level_of_unit[(df["col"] == 2) & (df["row"] == 3)][0]
    b = rd.level_of_unit[(df["col"] == 2) & (df["row"] == 5)][0]
    assert K[a, b] == pytest.approx(0.25)


def test_ar1_term_fits_and_reports():
    df = _field(5, n_col=6, n_row=10, holes=4, nan=2)
    res = mvreml.fit("y ~ 1", random="~ ar1v(row):id(col)", data=df)
    vc = res.varcomp
    assert list(vc.index) == ["row:col", "row:col!row!cor", "units"]
    assert vc.loc["row:col!row!cor", "estimate"] > -1 and vc.loc["row:col!row!cor", "estimate"] < 1
    assert res.converged
    # the same model written through the lattice residual's parametrization: the log L of a
    # trend ar1(row):id(col) + units equals that of the engine's dense reference (tested above);
    # here: refitting from the estimates moves nothing
    again = mvreml.fit("y ~ 1", random="~ ar1v(row):id(col)", data=df,
                       init={"row:col": np.array([[vc.loc["row:col", "estimate"]]])})
    assert again.loglik == pytest.approx(res.loglik, abs=1e-6)
    # no 1 x 1 "covariance" of an ar1 term: its variance is in varcomp, not a level matrix
    with pytest.raises(mvreml.errors.ModelError, match=r"row:col!row!cor"):
        res.covariance("row:col")


def test_ar1_term_bad_input():
    df = _field(2)
    with pytest.raises(mvreml.errors.DataError, match="positions must be numbers"):
        mvreml.fit("y ~ 1", random="~ ar1v(gen):col", data=df.assign(gen="g" + df["gen"]))
    # identifiers, not positions: 10 distinct values spread over 1e6 would be a lattice of holes
    ids = df.assign(row=df["row"] * 100_000)
    with pytest.raises(mvreml.errors.DataError, match=r"7 distinct values occur.*rank\(method='dense'\)"):
        mvreml.fit("y ~ 1", random="~ ar1v(row):col", data=ids)
    with pytest.raises(mvreml.errors.DataError, match="mostly holes"):
        mvreml.fit("y ~ 1", residual="~ ar1(col):ar1(row)", data=ids)
    with pytest.raises(mvreml.errors.FormulaError, match="cannot be crossed with vm"):
        ped = pd.DataFrame({"id": ["1", "2"], "sire": [None, None], "dam": [None, None]})
        mvreml.fit("y ~ 1", random="~ ar1(row):vm(gen, ped)", data=df, relmat={"ped": mvreml.Pedigree(ped)})


def test_ar1_term_refuses_kenward_roger():
    df = _field(4, n_col=5, n_row=8)
    res = mvreml.fit("y ~ x", random="~ ar1v(row):id(col)", data=df)
    with pytest.raises(mvreml.errors.ModelError, match="enter V linearly"):
        res.wald(den_df="kenward-roger")


def test_dsum_levels_fit_and_bad_input():
    df = _field(3, n_col=6, n_row=10, sites=("S1", "S2", "S3"), holes=5)
    form = "~ dsum(~ ar1(col):ar1(row) + id(col):ar1(row) | site, levels = list({}))"
    res = mvreml.fit("y ~ site", random="~ gen", residual=form.format("1:2, 3"), data=df)
    assert res.converged
    vc = res.varcomp
    assert "site_S2!col!cor" in vc.index and "site_S3!col!cor" not in vc.index and "site_S3!row!cor" in vc.index
    named = mvreml.fit("y ~ site", random="~ gen", residual=form.format('c("S1", "S2"), "S3"'), data=df)
    assert named.loglik == pytest.approx(res.loglik, abs=1e-8)
    FE = mvreml.errors.FormulaError
    with pytest.raises(FE, match="'S3' of 'site' get no structure"):
        mvreml.fit("y ~ site", random="~ gen", residual=form.format("1, 2"), data=df)
    with pytest.raises(FE, match="section site='S2' is given two structures"):
        mvreml.fit("y ~ site", random="~ gen", residual=form.format("1:2, 2:3"), data=df)
    with pytest.raises(FE, match="section 4 of 'site'.*3 levels"):
        mvreml.fit("y ~ site", random="~ gen", residual=form.format("1:2, 3:4"), data=df)
    with pytest.raises(FE, match="no level 'S9'"):
        mvreml.fit("y ~ site", random="~ gen", residual=form.format('"S1", "S9"'), data=df)
    with pytest.raises(FE, match="2 structures but levels= lists 3 groups"):
        mvreml.fit("y ~ site", random="~ gen", residual=form.format("1, 2, 3"), data=df)
    with pytest.raises(FE, match="same lattice factors"):
        mvreml.fit("y ~ site", random="~ gen", data=df,
                   residual="~ dsum(~ ar1(col):ar1(row) + ar1(row) | site, levels = list(1:2, 3))")


def test_bad_lattice_input_names_plots_cells_and_fix():
    DE = mvreml.errors.DataError
    df = _field(6, sites=("S1", "S2"), holes=0, nan=0)
    # two records on one plot of the second section: the plot, the section and the data rows
    twice = pd.concat([df, df[df["site"] == "S2"].iloc[[3]]], ignore_index=True)
    with pytest.raises(DE, match=r"two records on the plot col=1, row=4 in section site='S2' "
                                 r"\(data rows \d+ and 63\)"):
        mvreml.fit("y ~ site", random="~ gen", residual="~ dsum(~ ar1(col):ar1(row) | site)", data=twice)
    # labels that are not positions: which value, and how to give numbers
    with pytest.raises(DE, match=r"got 'R1'; give the row / column number of every plot as a numeric column"):
        mvreml.fit("y ~ 1", random="~ gen", residual="~ ar1(col):ar1(row)", data=df.assign(row="R" + df["row"].astype(str)))
    # a lattice that is not rectangular: which cells are absent, that they are missing plots
    grid = pd.DataFrame([(c, r) for c in range(1, 4) for r in range(1, 5) if (c, r) not in ((2, 3), (3, 4))],
                        columns=["col", "row"])
    rng = np.random.default_rng(0)
    grid["y"] = rng.standard_normal(len(grid))
    with pytest.warns(mvreml.errors.DataWarning,
                      match=r"col:row lattice is not complete: cells without a record 2 of 12 "
                            r"\(col=2, row=3; col=3, row=4\) are treated as missing plots \(2 in all\)"):
        res = mvreml.fit("y ~ 1", residual="~ ar1(col):ar1(row)", data=grid, maxiter=3)
    assert res.n_obs == 10 and any("2 plots of the lattice have no record" in m for m in res.diagnostics)
    # a complete lattice says nothing
    full = pd.DataFrame([(c, r) for c in range(1, 4) for r in range(1, 5)], columns=["col", "row"])
    full["y"] = rng.standard_normal(len(full))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", mvreml.errors.DataWarning)
        mvreml.fit("y ~ 1", residual="~ ar1(col):ar1(row)", data=full, maxiter=3)


def test_sample_variogram_equals_all_pairs():
    """The grid-shift variogram against the all-pairs definition, two sections with holes."""
    from mvreml.variogram import sample_variogram

    rng = np.random.default_rng(8)
    rec = _field(8, n_col=5, n_row=6, sites=("S1", "S2"), holes=6, nan=0)
    rec = pd.DataFrame({"section": rec["site"], "pos_col": rec["col"] - 1, "pos_row": rec["row"] - 1,
                        "residual": rng.standard_normal(len(rec))})
    sums = {}
    for _, g in rec.groupby("section"):
        P, e = g[["pos_col", "pos_row"]].to_numpy(), g["residual"].to_numpy()
        for a in range(len(e)):
            for b in range(a + 1, len(e)):
                lag = tuple(np.abs(P[a] - P[b]))
                s, n = sums.get(lag, (0.0, 0))
                sums[lag] = (s + 0.5 * (e[a] - e[b]) ** 2, n + 1)
    v = sample_variogram(rec)
    assert len(v) == len(sums)
    for lc, lr, gamma, n in v.itertuples(index=False):
        s, m = sums[(lc, lr)]
        assert n == m and gamma == pytest.approx(s / m, rel=1e-12)
    w = sample_variogram(rec, max_lag=2)
    assert w["lag_col"].max() == 2 and w["lag_row"].max() == 2
    pd.testing.assert_frame_equal(w, v[(v["lag_col"] <= 2) & (v["lag_row"] <= 2)].reset_index(drop=True))


def test_random_ar1_trend_is_the_lattice_residual_plus_nugget():
    """The same V in two forms: sigma^2 AR1 (x) AR1 as a random trend on the lattice (K(rho) on
    every position, missing plots included) beside an iid residual, and as the spatial residual
    beside the nugget ``units``: the same REML log L and estimates."""
    df = _field(21, n_col=10, n_row=12, holes=4, nan=0)
    rng = np.random.default_rng(21)
    Lc, Lr = (np.linalg.cholesky(_ar1(np.arange(n), r)) for n, r in ((10, 0.6), (12, 0.4)))
    field = Lc @ rng.standard_normal((10, 12)) @ Lr.T
    df["y"] = field[df["col"] - 1, df["row"] - 1] + rng.normal(0, np.sqrt(0.3), len(df))
    df.loc[[3, 50, 97], "y"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trend = mvreml.fit("y ~ x", random="~ gen + ar1(col):ar1(row)", data=df, tol=1e-10, maxiter=80)
        lattice = mvreml.fit("y ~ x", random="~ gen + units", residual="~ ar1(col):ar1(row)", data=df,
                             tol=1e-10, maxiter=80)
    assert trend.converged and lattice.converged
    assert trend.loglik == pytest.approx(lattice.loglik, abs=1e-6)
    a, b = trend.varcomp["estimate"], lattice.varcomp["estimate"]
    for x, y in [("col:row", "col:row!R"), ("col:row!col!cor", "col:row!col!cor"),
                 ("col:row!row!cor", "col:row!row!cor"), ("units", "units"), ("gen", "gen")]:
        assert a[x] == pytest.approx(b[y], rel=2e-3, abs=1e-4), x


def test_ar1_term_at_zero_holds_its_correlation_and_says_so():
    """A term whose variance goes to zero leaves log L flat in its correlation: held, named, and
    the fit converges (before: 50 iterations of a wandering correlation, not converged)."""
    df = _field(5, n_col=6, n_row=10, holes=4, nan=2, sites=("S1", "S2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mvreml.fit("y ~ site", random="~ at(site):ar1v(row) + gen", data=df)
    assert res.converged
    vc = res.varcomp
    assert vc.loc["at(site, S1):row", "estimate"] < 1e-6
    assert any("at(site, S1):row!row!cor held at" in m and "variance of at(site, S1):row is at zero" in m
               for m in res.diagnostics)
    assert vc.loc["at(site, S2):row", "estimate"] > 0.1      # the other site's term is estimated


def test_multitrait_ar1_term_matches_dense():
    """us(trait):ar1(row):col with a missing trait here and there: Cov(y_ia, y_jb) =
    G_ab rho^|row_i - row_j| [col_i = col_j] + R_ab [i = j], written from the data."""
    df = _field(9, n_col=3, n_row=6, holes=2, nan=0)
    df.loc[[1, 7], "y"] = np.nan
    df.loc[[4], "z"] = np.nan
    design, _, model = _model(df, "cbind(y, z) ~ trait", "~ us(trait):ar1(row):col", "~ units:us(trait)")
    theta = np.array([1.2, 0.3, 0.8, 0.45, 1.0, -0.2, 0.7])
    ev = model.evaluate(theta)
    units = df[df[["y", "z"]].notna().any(axis=1)].reset_index(drop=True)
    obs = [(i, a) for i in range(len(units)) for a, t in enumerate(("y", "z")) if pd.notna(units[t][i])]
    yv = np.array([units[("y", "z")[a]][i] for i, a in obs])
    X = design.X.toarray()

    def mats(th):
        G = np.array([[th[0], th[1]], [th[1], th[2]]])
        R = np.array([[th[4], th[5]], [th[5], th[6]]])
        return G, th[3], R

    def V_of(th):
        G, rho, R = mats(th)
        V = np.zeros((len(obs), len(obs)))
        for p, (i, a) in enumerate(obs):
            for q, (j, b) in enumerate(obs):
                same_col = units["col"][i] == units["col"][j]
                V[p, q] = G[a, b] * rho ** abs(units["row"][i] - units["row"][j]) * same_col + R[a, b] * (i == j)
        return V

    def loglik(th):
        V = V_of(th)
        Vi = np.linalg.inv(V)
        XtViX = X.T @ Vi @ X
        P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
        N, p = X.shape
        return -0.5 * ((N - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1]
                       + yv @ P @ yv), P

    np.testing.assert_allclose(design.y, yv)
    ll, P = loglik(theta)
    assert ev.loglik == pytest.approx(ll, rel=1e-8)
    fd, F = np.zeros(7), np.zeros((len(obs), 7))
    for i in range(7):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += 1e-6
        tm[i] -= 1e-6
        fd[i] = (loglik(tp)[0] - loglik(tm)[0]) / 2e-6
        F[:, i] = (V_of(tp) - V_of(tm)) / 2e-6 @ (P @ yv)
    np.testing.assert_allclose(ev.score, fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ev.ai, 0.5 * F.T @ P @ F, rtol=1e-5, atol=1e-8)
