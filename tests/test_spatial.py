"""Spatial residuals on a field lattice: ar1(col):ar1(row), id(col):ar1(row), ar1(row), per
section (dsum), with missing plots and a nugget; against ASReml's published fit and an
independent dense computation on the observed plots only (V_oo = Z G Z' + R_oo, R the full
lattice's sigma^2 AR1 (x) AR1 restricted to the plots that have a record)."""
import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.api import _blocks
from mvreml.design import build_design
from mvreml.errors import DataError, FormulaError
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.lattice import ar1_inverse_entries, ar1_matrix
from mvreml.likelihood import REMLModel


def test_slatehall_ar1_ar1_as_asreml(data_dir):
    """Gilmour, Cullis & Verbyla (1997) model 4 (tests/data/agridat/SOURCE.md)."""
    df = pd.read_csv(data_dir / "agridat" / "gilmour.slatehall.csv")
    df = df.assign(xf=df["col"], yf=df["row"], rowf=df["row"].astype(str), colf=df["col"].astype(str))
    res = mvreml.fit("yield ~ gen + row", random="~ rowf + colf", residual="~ ar1(xf):ar1(yf)", data=df)
    assert res.converged
    vc = res.varcomp
    for comp, est, se in [("colf", 2519, 1959), ("rowf", 20290, 10260), ("xf:yf!R", 23950, 4616),
                          ("xf:yf!xf!cor", 0.439, 0.113), ("xf:yf!yf!cor", 0.125, 0.117)]:
        assert vc.loc[comp, "estimate"] == pytest.approx(est, rel=4e-3), comp   # printed digits
        assert vc.loc[comp, "std_error"] == pytest.approx(se, rel=5e-3), comp
    assert res.fixef.loc["row", "estimate"] == pytest.approx(31.72252, abs=1e-3)
    assert res.covariance("units").iloc[0, 0] == pytest.approx(vc.loc["xf:yf!R", "estimate"])


def test_ar1_inverse_entries_are_the_inverse():
    for n, rho in [(1, 0.3), (2, -0.4), (7, 0.8)]:
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        np.testing.assert_allclose(ar1_inverse_entries(i, j, n, rho), np.linalg.inv(ar1_matrix(n, rho)),
                                   atol=1e-12)


# ---------------------------------------------------------------- dense checks
def _field(seed, n_col=5, n_row=6, holes=3, nan=2, sites=("S1",), gens=6):
    rng = np.random.default_rng(seed)
    rows = []
    for s, site in enumerate(sites):
        for c in range(1, n_col + 1 + s):          # the second site is one column wider
            for r in range(1, n_row + 1):
                rows.append((site, c, r))
    df = pd.DataFrame(rows, columns=["site", "col", "row"])
    df = df.drop(index=rng.choice(len(df), holes, replace=False)).reset_index(drop=True)
    df["gen"] = rng.integers(0, gens, len(df)).astype(str)
    df["x"] = rng.standard_normal(len(df))
    df["y"] = rng.standard_normal(len(df)) + 0.1 * df["row"] + (df["site"] == "S2") * 2.0
    df.loc[rng.choice(len(df), nan, replace=False), "y"] = np.nan
    df["rowf"], df["colf"] = df["row"].astype(str), df["col"].astype(str)
    return df


def _dense_reference(df, fixed, random, residual, theta, blocks, design, kinds):
    """log L of the observed plots from scratch: the lattice of each section from the data."""
    obs = df[df["y"].notna()].reset_index(drop=True)
    n = len(obs)
    n_data = design.n_obs - design.n_missing_plots
    assert n == n_data
    Xfull = design.X.toarray()[:n]
    X = Xfull[:, [j for j, name in enumerate(design.fixef_names) if not name.startswith("mv_")]]
    V = np.zeros((n, n))
    nr = len(design.random)
    for b, rd in zip(blocks[:nr], design.random):
        Z = np.zeros((design.n_obs, rd.q * rd.t))
        Z[rd.obs_rows, rd.obs_cols] = 1.0
        Z = Z[:n]
        G = b.structure.matrix(theta[b.slice])
        V += Z @ np.kron(np.linalg.inv(rd.kinv.toarray()), G) @ Z.T
    sections = sorted(df["site"].unique()) if "dsum" in residual else [None]
    for rb, sec in zip(blocks[nr:], sections):
        sub = df if sec is None else df[df["site"] == sec]
        th = theta[rb.slice]
        sigma2, rhos = th[0], list(th[1:])
        mats, coords = [], []
        for col, kind in kinds:
            lo, hi = sub[col].min(), sub[col].max()
            size = hi - lo + 1
            mats.append(ar1_matrix(size, rhos.pop(0)) if kind == "ar1" else np.eye(size))
            coords.append((col, lo, size))
        R = sigma2 * (np.kron(mats[0], mats[1]) if len(mats) == 2 else mats[0])
        idx = np.flatnonzero((obs["site"] == sec).to_numpy() if sec is not None else np.ones(n, bool))
        lat = np.zeros(len(idx), int)
        for col, lo, size in coords:
            lat = lat * size + (obs[col].to_numpy()[idx] - lo)
        V[np.ix_(idx, idx)] += R[np.ix_(lat, lat)]
    y = obs["y"].to_numpy()
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
    N, p = X.shape
    return -0.5 * ((N - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1]
                   + y @ P @ y)


CASES = [
    (dict(), "y ~ 1 + x", "~ rowf + colf", "~ ar1(col):ar1(row)", [("col", "ar1"), ("row", "ar1")]),
    (dict(holes=0, nan=0), "y ~ 1", "~ gen", "~ id(col):ar1(row)", [("col", "id"), ("row", "ar1")]),
    (dict(n_col=1, n_row=14, holes=2), "y ~ 1 + x", "~ gen", "~ ar1(row)", [("row", "ar1")]),
    (dict(), "y ~ 1", "~ units + gen", "~ ar1(col):ar1(row)", [("col", "ar1"), ("row", "ar1")]),
    (dict(sites=("S1", "S2"), holes=4), "y ~ site", "~ gen", "~ dsum(~ ar1(col):ar1(row) | site)",
     [("col", "ar1"), ("row", "ar1")]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_spatial_matches_dense_on_the_observed_plots(case):
    kw, fixed, random, residual, kinds = CASES[case]
    df = _field(case, **kw)
    fs = parse_fixed(fixed)
    res = parse_residual(residual, fs.response)
    design = build_design(df, fs, parse_random(random, fs.response), res)
    blocks = _blocks(design, res)
    model = REMLModel(design, blocks)
    rng = np.random.default_rng(case)
    theta = np.zeros(blocks[-1].stop)
    for b in blocks:
        theta[b.slice] = b.structure.from_matrix(np.array([[rng.uniform(0.5, 2.0)]]))
        if b.k is None:
            theta[b.start + 1:b.stop] = rng.uniform(-0.6, 0.8, b.stop - b.start - 1)
    ev = model.evaluate(theta)

    def dense(th):
        return _dense_reference(df, fixed, random, residual, th, blocks, design, kinds)

    assert ev.loglik == pytest.approx(dense(theta), rel=1e-8)
    fd = np.zeros_like(theta)
    for i in range(len(theta)):
        h = 1e-5 * max(abs(theta[i]), 1e-2)
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        fd[i] = (dense(tp) - dense(tm)) / (2 * h)
    np.testing.assert_allclose(ev.score, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_spatial_ai_matches_its_dense_formula():
    """AI = 1/2 F' P F with F = [dV_j P y]: dense V, P and dV_j on the augmented lattice."""
    df = _field(7)
    fs = parse_fixed("y ~ 1 + x")
    res = parse_residual("~ ar1(col):ar1(row)", fs.response)
    design = build_design(df, fs, parse_random("~ rowf", fs.response), res)
    blocks = _blocks(design, res)
    model = REMLModel(design, blocks)
    theta = np.array([0.7, 1.3, 0.4, -0.3])
    ev = model.evaluate(theta)
    N = design.n_obs
    Z = np.zeros((N, design.random[0].q))
    Z[design.random[0].obs_rows, design.random[0].obs_cols] = 1.0
    grid = design.lattice[0]["grid"]
    nc, nr = grid.shape

    def R_of(th):
        R = np.zeros((N, N))
        full = th[1] * np.kron(ar1_matrix(nc, th[2]), ar1_matrix(nr, th[3]))
        g = grid.reshape(-1)
        R[np.ix_(g, g)] = full
        return R

    def V_of(th):
        return th[0] * Z @ Z.T + R_of(th)

    X = design.X.toarray()
    Vi = np.linalg.inv(V_of(theta))
    P = Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi)
    Py = P @ design.y
    F = []
    for i in range(4):
        h = 1e-6
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        F.append((V_of(tp) - V_of(tm)) / (2 * h) @ Py)
    F = np.column_stack(F)
    np.testing.assert_allclose(ev.ai, 0.5 * F.T @ P @ F, rtol=1e-6)


# ---------------------------------------------------------------- bad input
def test_bad_spatial_input():
    df = _field(3)
    twice = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataError, match="two records on the plot col=.*row="):
        mvreml.fit("y ~ 1", random="~ gen", residual="~ ar1(col):ar1(row)", data=twice)
    with pytest.raises(FormulaError, match="confounded with the residual"):
        mvreml.fit("y ~ 1", random="~ units + gen", data=df)
    with pytest.raises(FormulaError, match="product of ar1\\(factor\\) and id\\(factor\\)"):
        mvreml.fit("y ~ 1", random="~ gen", residual="~ ar1(col):us(row)", data=df)
    two = df.assign(z=df["y"] * 2 + 1)
    with pytest.raises(FormulaError, match="multi-trait spatial residuals \\(ar1\\(col\\):ar1\\(row\\):"):
        mvreml.fit("cbind(y, z) ~ trait", random="~ diag(trait):gen", residual="~ ar1(col):ar1(row)", data=two)
    with pytest.raises(FormulaError, match="multi-trait spatial residuals \\(us\\(trait\\):ar1\\(col\\)"):
        mvreml.fit("cbind(y, z) ~ trait", random="~ diag(trait):gen", data=two,
                   residual="~ us(trait):ar1(col):ar1(row)")
    with pytest.raises(DataError, match="positions must be numbers"):
        mvreml.fit("y ~ 1", random="~ gen", residual="~ ar1(gen):ar1(row)", data=df.assign(gen="g" + df["gen"]))
    res = mvreml.fit("y ~ 1", random="~ gen", residual="~ ar1(col):ar1(row)", data=df)
    assert any("kept in the lattice as missing values" in m for m in res.diagnostics)
    assert res.n_obs == int(df["y"].notna().sum())


def test_residuals_fitted_and_variogram(data_dir):
    df = pd.read_csv(data_dir / "agridat" / "gilmour.slatehall.csv")
    df = df.assign(rowf=df["row"].astype(str), colf=df["col"].astype(str))
    res = mvreml.fit("yield ~ gen + row", random="~ rowf + colf", residual="~ ar1(col):ar1(row)", data=df)
    r = res.residuals()
    assert len(r) == 150 and list(r["row"]) == list(range(150))
    np.testing.assert_allclose(r["y"], df["yield"].to_numpy(float))
    np.testing.assert_allclose(r["fitted"] + r["residual"], r["y"])
    # fitted = X b + Z u from the published tables
    X_part = res.fixef.loc["(Intercept)", "estimate"] + res.fixef.loc["row", "estimate"] * df["row"]
    gen = df["gen"].map(lambda g: res.fixef["estimate"].get(f"gen[T.{g}]", 0.0))
    rowu = df["rowf"].map(res.blup("rowf")["yield"])
    colu = df["colf"].map(res.blup("colf")["yield"])
    np.testing.assert_allclose(res.fitted(), X_part + gen + rowu + colu, rtol=1e-10)
    v = res.variogram()
    assert list(v.columns) == ["lag_col", "lag_row", "gamma", "n_pairs"]
    e = r["residual"].to_numpy()
    pc, pr = r["pos_col"].to_numpy(), r["pos_row"].to_numpy()
    sel = [(a, b) for a in range(150) for b in range(a + 1, 150) if abs(pc[a] - pc[b]) == 1 and pr[a] == pr[b]]
    ref = np.mean([0.5 * (e[a] - e[b]) ** 2 for a, b in sel])
    got = v[(v["lag_col"] == 1) & (v["lag_row"] == 0)]
    assert got["n_pairs"].iloc[0] == len(sel) and got["gamma"].iloc[0] == pytest.approx(ref)
    again = mvreml.Result.from_json(res.to_json())
    pd.testing.assert_frame_equal(again.variogram(), v)
    with pytest.raises(mvreml.errors.ModelError, match="needs a spatial residual"):
        mvreml.fit("yield ~ gen", random="~ rowf", data=df).variogram()
