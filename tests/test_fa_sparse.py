"""The factor formulation of fa(k) / rr(k) terms (mvreml.fa_sparse) against the dense one.

V = Z G Z' + R is the same matrix in both formulations, so log L, the score and the AI matrix
must agree to rounding with the dense REMLModel and with tests/dense.py (V built directly),
and a fit must reach the same optimum. rr(k) (G = Lambda Lambda', singular) exists only in
the factor formulation: it is checked against the dense V with that G, against us fits, and
its PEVs / fixed-effect covariance against their dense formulas.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from dense import assert_engine_matches_dense, dense_P, dense_parts
from test_met import _met_data, _model, _pedigree

import mvreml
import mvreml.fa_sparse as fs
from mvreml.fa_result import result_model
from mvreml.errors import BoundaryWarning, FormulaError
from mvreml.likelihood import REMLModel

CASES = [
    # (data kwargs, fixed, random, residual, pedigree)
    (dict(n_site=4), "y1 ~ site", "~ fa(site, 1):gen", "~ dsum(~ units | site)", False),
    (dict(n_site=4, n_gen=10), "y1 ~ site", "~ fa(site, 2):gen + at(site, 2):block", "~ units", False),
    (dict(n_gen=10), "y1 ~ site", "~ fa(site, 1):vm(gen, ped) + ide(gen)", "~ units", True),
    (dict(n_site=5, n_gen=9), "y1 ~ site + x", "~ fa(site, 2):vm(gen, ped) + site:rep",
     "~ dsum(~ units | site)", True),
    # several records per unit (a trait matrix in R): the loadings' trace runs over off-diagonal pairs
    (dict(traits=("y1", "y2", "y3"), missing=0.15), "cbind(y1, y2, y3) ~ trait + trait:site",
     "~ fa(trait, 1):gen", "~ units:us(trait)", False),
]


def _factor_model(design, blocks):
    i = next(j for j, b in enumerate(blocks) if b.structure.name in ("fa", "rr"))
    return fs.FactorREMLModel(design, blocks, i)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_factor_formulation_equals_dense(case):
    kw, fixed, random, residual, with_ped = CASES[case]
    df = _met_data(case + 40, **kw)
    relmat = {"ped": _pedigree(df["gen"].nunique(), case)} if with_ped else None
    design, blocks, dense, theta = _model(df, fixed, random, residual, relmat, seed=case)
    sparse = _factor_model(design, blocks)
    ev_d, ev_s = dense.evaluate(theta), sparse.evaluate(theta)
    assert ev_s.loglik == pytest.approx(ev_d.loglik, rel=1e-12)
    np.testing.assert_allclose(ev_s.score, ev_d.score, rtol=1e-8, atol=1e-10 * np.abs(ev_d.score).max())
    np.testing.assert_allclose(ev_s.ai, ev_d.ai, rtol=1e-8, atol=1e-10 * np.abs(ev_d.ai).max())
    # the solution in the dense layout: u = Lambda f + delta, the same BLUPs
    np.testing.assert_allclose(ev_s.solution, ev_d.solution, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ev_s.residuals, ev_d.residuals, atol=1e-9)
    # and against V = Z G Z' + R built directly, the score against finite differences
    assert_engine_matches_dense(design, blocks, sparse, theta)
    # a second point: the loadings move the values of W, refilled in place
    theta2 = theta.copy()
    fb = sparse.fb
    theta2[fb.start:fb.start + 2] *= 1.3
    np.testing.assert_allclose(sparse.evaluate(theta2).score, dense.evaluate(theta2).score, rtol=1e-8,
                               atol=1e-10)


def _rr_theta(blocks, theta, rng):
    """theta with the rr block's loadings drawn at random (G = L L' of rank k)."""
    out = theta.copy()
    for b in blocks:
        if b.structure.name == "rr":
            out[b.slice] = rng.standard_normal(b.stop - b.start)
    return out


@pytest.mark.parametrize("random, with_ped", [("~ rr(site, 1):gen", False), ("~ rr(site, 2):vm(gen, ped)", True),
                                              ("~ rr(site, 2):gen + diag(site):gen", False)])
def test_rr_equals_dense_v_with_singular_g(random, with_ped):
    """rr: G = Lambda Lambda' is singular, V = Z G Z' + R is not; log L, score and AI against
    tests/dense.py, which builds V with that G directly."""
    df = _met_data(7, n_site=4, n_gen=9)
    relmat = {"ped": _pedigree(df["gen"].nunique(), 3)} if with_ped else None
    design, blocks, _, theta = _model(df, "y1 ~ site", random, "~ dsum(~ units | site)", relmat, seed=3)
    theta = _rr_theta(blocks, theta, np.random.default_rng(5))
    b = next(b for b in blocks if b.structure.name == "rr")
    assert np.linalg.matrix_rank(b.structure.matrix(theta[b.slice])) == b.structure.k
    assert fs.factor_block(design, blocks) is not None
    assert_engine_matches_dense(design, blocks, _factor_model(design, blocks), theta)


@pytest.mark.parametrize("random", ["~ rr(site, 2):vm(gen, ped)", "~ fa(site, 2):vm(gen, ped) + site:rep"])
def test_pev_and_fixed_vcov_against_dense_formulas(random):
    """PEV(u) = diag(G - G Z'P Z G) and (X'V^-1 X)^-1, with G = K (x) (Lambda Lambda' + Psi);
    the data drop some genotype x site cells, and the pedigree's founders have no records, so
    the fa cross terms C^{f_g, delta_gs} come from links no record makes."""
    df = _met_data(8, n_site=4, n_gen=9, drop=0.4)
    relmat = {"ped": _pedigree(df["gen"].nunique(), 4)}
    design, blocks, _, theta = _model(df, "y1 ~ site", random, "~ dsum(~ units | site)", relmat, seed=4)
    theta = _rr_theta(blocks, theta, np.random.default_rng(6))
    view = result_model(_factor_model(design, blocks))
    view.evaluate(theta)
    mats = [b.structure.matrix(theta[b.slice]) for b in blocks]
    parts = dense_parts(design)
    X, Zs, Ks = parts
    Gfull = np.kron(Ks[0], mats[0])
    P = dense_P(design, mats, parts)
    pev = np.diag(Gfull - Gfull @ Zs[0].T @ P @ Zs[0] @ Gfull)
    got = view.pev_diagonal(theta)
    np.testing.assert_allclose(got[design.p:design.p + len(pev)], pev, rtol=1e-8, atol=1e-10)
    from dense import dense_V
    Vi = np.linalg.inv(dense_V(design, mats, parts))
    np.testing.assert_allclose(view.fixed_vcov(theta=theta), np.linalg.inv(X.T @ Vi @ X), rtol=1e-8)
    # solves with J C^-1 J' (predictions): the fixed block is (X'V^-1X)^-1 again
    E = np.zeros((view.pattern.n_eq, 1))
    E[0, 0] = 1.0
    assert view.factor(E)[0, 0] == pytest.approx(np.linalg.inv(X.T @ Vi @ X)[0, 0], rel=1e-8)


def _rank_data(n_site=5, n_gen=40, rank=2, seed=2):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n_site, rank))
    u = rng.standard_normal((n_gen, rank)) @ L.T
    rows = [(f"S{s + 1}", f"G{g:02d}", s + u[g, s] + rng.standard_normal() * (0.5 + 0.1 * s))
            for s in range(n_site) for g in range(n_gen) for _ in range(2)]
    return pd.DataFrame(rows, columns=["site", "gen", "y"])


def test_rr_fits_against_us():
    """rr(2) on rank-2 data: log L <= us's, the loadings' G of rank 2; rr(t) on a full-rank
    problem is the us model in Cholesky form: the same log L."""
    df = _rank_data()
    kw = dict(residual="~ dsum(~ units | site)", data=df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        us = mvreml.fit("y ~ site", random="~ us(site):gen", **kw)
        rr2 = mvreml.fit("y ~ site", random="~ rr(site, 2):gen", **kw)
    assert rr2.converged
    assert rr2.loglik <= us.loglik + 1e-6
    assert rr2.loglik > us.loglik - 5.0          # rank-2 truth: rr(2) is nearly as good
    full = _rank_data(n_site=3, n_gen=60, rank=3, seed=9)
    kw = dict(residual="~ dsum(~ units | site)", data=full)
    us3 = mvreml.fit("y ~ site", random="~ us(site):gen", **kw)
    rr3 = mvreml.fit("y ~ site", random="~ rr(site, 3):gen", **kw)
    assert us3.converged and rr3.converged
    assert rr3.loglik == pytest.approx(us3.loglik, abs=1e-6)
    np.testing.assert_allclose(rr3.covariance("rr(site, 3):gen"), us3.covariance("site:gen"), rtol=1e-3)
    G = rr2.covariance("rr(site, 2):gen").to_numpy()
    assert np.linalg.matrix_rank(G, tol=1e-8 * np.abs(G).max()) == 2
    L = rr2.loadings("rr(site, 2):gen")
    assert list(L.columns) == ["fa1", "fa2"] and L.iloc[0, 1] == 0.0 and L.iloc[1, 1] >= 0
    np.testing.assert_allclose(L.to_numpy() @ L.to_numpy().T, G, atol=1e-10)
    assert "rr(site, 2):gen!S3!fa2" in rr2.varcomp.index
    blup = rr2.blups["rr(site, 2):gen"]
    assert blup.shape[0] == 40 and np.all(blup[[f"pev_S{s}" for s in range(1, 6)]].to_numpy() >= 0)


def test_fa_fit_sparse_equals_dense(monkeypatch):
    """The same fa(2) fit in both formulations: log L, components, BLUPs and PEVs."""
    df = _rank_data(n_site=6, n_gen=30, seed=4)
    kw = dict(random="~ fa(site, 2):gen", residual="~ dsum(~ units | site)", data=df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        monkeypatch.setattr(fs, "SPARSE_MIN_LEVELS", 100)
        dense = mvreml.fit("y ~ site", **kw)
        monkeypatch.setattr(fs, "SPARSE_MIN_LEVELS", 2)
        sparse = mvreml.fit("y ~ site", **kw)
    # psi sit at the 1e-9 floor here, where the dense formulation's C carries 1 / psi = 1e9: its
    # log|C| is good to ~1e-5 only (a tighter tol makes the dense fit wander by 1e-5 while the
    # factor formulation stays put to 1e-12), so the comparison is at that level
    assert sparse.loglik == pytest.approx(dense.loglik, abs=2e-5)
    np.testing.assert_allclose(sparse.covariance("fa(site, 2):gen"), dense.covariance("fa(site, 2):gen"),
                               atol=1e-3)
    b_s, b_d = sparse.blups["fa(site, 2):gen"], dense.blups["fa(site, 2):gen"]
    np.testing.assert_allclose(b_s.to_numpy(), b_d.to_numpy(), atol=1e-3)
    # predictions with the genotype x site effects (solves with J C^-1 J' in the factor formulation)
    p_s, p_d = sparse.predict(classify="site:gen"), dense.predict(classify="site:gen")
    np.testing.assert_allclose(p_s["predicted_value"], p_d["predicted_value"], atol=1e-3)
    np.testing.assert_allclose(p_s["std_error"], p_d["std_error"], rtol=1e-3)
    # at the same theta, the PEVs agree to rounding (the fits' optima differ by ~1e-6, and their
    # psi sit at the 1e-9 floor: C carries 1 / psi, so the check moves them off it)
    theta = sparse._fitted[1].copy()
    theta[-12:-6] = np.maximum(theta[-12:-6], 0.05)
    view, dmodel = sparse._fitted[0], REMLModel(dense._fitted[0].design, dense._fitted[0].blocks)
    view.evaluate(theta)
    np.testing.assert_allclose(view.pev_diagonal(theta), dmodel.pev_diagonal(theta), rtol=1e-9, atol=1e-12)


def test_switch_and_bad_input():
    df = _met_data(3, n_site=4)
    design, blocks, _, _ = _model(df, "y1 ~ site", "~ fa(site, 1):gen", "~ units")
    assert fs.factor_block(design, blocks) is None          # 4 levels: the dense formulation
    assert isinstance(fs.make_model(design, blocks), REMLModel)
    assert not isinstance(fs.make_model(design, blocks), fs.FactorREMLModel)
    with pytest.raises(FormulaError, match=r"at most 4 factor\(s\) are possible"):
        mvreml.fit("y1 ~ site", random="~ rr(site, 5):gen", data=df)
    with pytest.raises(FormulaError, match=r"at most 3 factor\(s\) are possible"):
        mvreml.fit("y1 ~ site", random="~ fa(site, 4):gen", data=df)
    # rr where the factor formulation does not apply is refused by name, not fitted densely
    with pytest.raises(FormulaError, match=r"rr\(site, 1\):gen.*one rr / fa term per model"):
        mvreml.fit("y1 ~ site", random="~ rr(site, 1):gen + rr(site, 1):rep", data=df)


def test_rr_structure_from_matrix_recovers_a_rank_k_matrix():
    from mvreml.structures import make_structure

    rng = np.random.default_rng(3)
    L = rng.standard_normal((5, 2))
    rr = make_structure("rr", tuple("abcde"), k=2, dim="site")
    th = rr.from_matrix(L @ L.T)
    np.testing.assert_allclose(rr.matrix(th), L @ L.T, atol=1e-10)
    Lr = rr.loadings(th)
    assert Lr[0, 1] == 0.0 and Lr[0, 0] >= 0 and Lr[1, 1] >= 0      # asreml's rotation
    assert rr.labels("rr(site, 2):gen")[:2] == ["rr(site, 2):gen!a!fa1", "rr(site, 2):gen!b!fa1"]
    assert rr.n_params == 9 and set(rr.kinds()) == {"loading"}
