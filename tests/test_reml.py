"""The AI-REML iteration: boundary machinery, diagnostics, starting values, and the seed reader's
3-trait trial (2 blocks x 159 RILs, HD / HT / GY, GY without genetic variance).

The reduced-rank parameterisation and its curvature are checked against finite differences,
the null-space diagnostics on constructed matrices, and the seed situation against an
independent dense optimisation of the REML likelihood (tests/dense_opt.py).
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.boundary import Reduced, matrix_gradient, pivoted_cholesky, theta_jacobian, theta_of_matrix
from mvreml.diagnose import NullDirection, describe, duplicate_traits, newton_step, null_directions
from mvreml.errors import BoundaryWarning, StartingValueError
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.start import _tidy_correlation, sub_model
from mvreml.structures import jacobian_elements, make_structure, vech_pairs

TRAITS = ["HD", "HT", "GY"]
SEED_FIXED = "cbind(HD, HT, GY) ~ trait"
SEED_MODEL = dict(random="~ diag(trait):Block + us(trait):RIL", residual="~ units:us(trait)")
RIL_COV = np.array([[20.0, 8.0, 0.0], [8.0, 30.0, 0.0], [0.0, 0.0, 0.0]])   # GY: no genetic variance
RESIDUAL_COV = np.array([[10.0, 2.0, 1.0], [2.0, 25.0, 3.0], [1.0, 3.0, 0.5]])
BLOCK_VAR = np.array([4.0, 1.0, 0.2])


def _normal(rng, n, cov):
    """n draws of N(0, cov) for a positive semidefinite cov (eigen square root)."""
    w, V = np.linalg.eigh(cov)
    return rng.standard_normal((n, len(cov))) @ (V * np.sqrt(np.clip(w, 0, None))).T


def seed_trial(seed: int = 19) -> pd.DataFrame:
    """The reader's trial: 2 blocks x 159 RILs, one plot per RIL and block, traits HD, HT, GY."""
    rng = np.random.default_rng(seed)
    n_blocks, n_rils = 2, 159
    u = _normal(rng, n_rils, RIL_COV)
    b = rng.standard_normal((n_blocks, 3)) * np.sqrt(BLOCK_VAR)
    block = np.repeat(np.arange(n_blocks), n_rils)
    ril = np.tile(np.arange(n_rils), n_blocks)
    y = np.array([60.0, 90.0, 5.0]) + b[block] + u[ril] + _normal(rng, len(block), RESIDUAL_COV)
    return pd.DataFrame({"Block": [f"B{i + 1}" for i in block], "RIL": [f"R{j + 1:03d}" for j in ril],
                         "HD": y[:, 0], "HT": y[:, 1], "GY": y[:, 2]})


def _fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mvreml.fit(*args, **kw)


@pytest.fixture(scope="module")
def seed_fit():
    data = seed_trial()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mvreml.fit(SEED_FIXED, data=data, **SEED_MODEL)
    return data, res, caught


# ---------------------------------------------------------------- reduced-rank parameterisation
def test_pivoted_cholesky_is_exact_for_a_rank_deficient_matrix():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 2))
    S = A @ A.T
    perm, L = pivoted_cholesky(S, 2)
    np.testing.assert_allclose((L @ L.T), S[np.ix_(perm, perm)], atol=1e-12)
    assert perm[0] == int(np.argmax(np.diag(S)))          # largest diagonal first
    assert np.all(np.diag(L[:2]) > 0)
    assert np.all(np.triu(L[:2], 1) == 0)                  # lower trapezoidal


def test_reduced_matrix_derivatives_match_finite_differences():
    rng = np.random.default_rng(2)
    d = np.array([1.0, 10.0, 0.1, 3.0])
    A = rng.standard_normal((4, 2))
    R = Reduced.from_scaled(A @ A.T, 2, d)
    assert R.r == 2 and R.null_space().shape == (4, 2)
    G = R.matrix()
    np.testing.assert_allclose(np.linalg.eigvalsh(G / np.outer(d, d))[:2], R.floor, rtol=1e-6)

    def vech(M):
        return np.array([M[i, j] for i, j in vech_pairs(4)])

    J = R.dvech()
    n = len(R.eta())
    fd = np.zeros_like(J)
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1e-6
        fd[:, k] = (vech(R.moved(e).matrix()) - vech(R.moved(-e).matrix())) / 2e-6
    np.testing.assert_allclose(J, fd, atol=1e-7 * np.abs(J).max())


def test_factor_curvature_is_the_hessian_of_a_linear_function_of_g():
    """f(G) = sum Gbar * G has zero Hessian in G, so on the factor scale its Hessian is exactly
    the transform's curvature term (negative semidefinite Gbar: all of it is kept)."""
    rng = np.random.default_rng(3)
    d = np.array([2.0, 0.5, 1.0])
    A = rng.standard_normal((3, 2))
    R = Reduced.from_scaled(A @ A.T, 2, d)
    B = rng.standard_normal((3, 3))
    Gbar = -(B @ B.T)
    eta0 = R.eta()
    n = len(eta0)

    def f(delta):
        return float(np.sum(Gbar * R.moved(delta).matrix()))

    h = 1e-4
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * h, np.eye(n)[j] * h
            H[i, j] = (f(ei + ej) - f(ei - ej) - f(-ei + ej) + f(-ei - ej)) / (4 * h * h)
    np.testing.assert_allclose(R.curvature(Gbar), -H, atol=1e-5 * np.abs(H).max())


def test_corgh_parameters_and_matrix_gradient_are_exact():
    st = make_structure("corgh", ("a", "b", "c"))
    G = np.array([[4.0, 1.0, 0.5], [1.0, 2.0, -0.3], [0.5, -0.3, 1.0]])
    th = theta_of_matrix(st, G)
    np.testing.assert_allclose(st.matrix(th), G, rtol=1e-14)
    np.testing.assert_allclose(theta_jacobian(st, th) @ jacobian_elements(st, th), np.eye(6), atol=1e-12)
    # Gbar of f(G) = sum W * G through the corgh score
    W = np.array([[1.0, 0.2, -0.4], [0.2, -2.0, 0.7], [-0.4, 0.7, 0.5]])
    score = np.array([np.sum(W * dG) for dG in st.derivatives(th)])
    np.testing.assert_allclose(matrix_gradient(st, th, score), W, rtol=1e-10)


# ---------------------------------------------------------------- diagnostics
def test_flat_direction_is_found_and_named():
    # two variances entering only through their sum: AI = a (1 1)' (1 1) + third parameter
    ai = np.array([[2.0, 2.0, 0.3], [2.0, 2.0, 0.3], [0.3, 0.3, 5.0]])
    score = np.array([0.7, 0.7, -0.2])            # equal scores: flat along (1, -1, 0)
    delta, dec, flat = newton_step(ai, score, np.ones(3))
    assert delta is None and len(flat) == 1
    v = flat[0].loadings
    np.testing.assert_allclose(np.abs(v), [1.0, 1.0, 0.0], atol=1e-8)
    text = describe(flat[0], ["Block", "Family", "units"], ["variance"] * 3)
    assert text == "Block and Family are confounded: only their sum is identified"


def test_singular_ai_with_a_nonzero_score_is_not_called_unidentified():
    """Fewer levels than traits: the AI matrix is singular but log L is not flat there."""
    ai = np.array([[2.0, 2.0], [2.0, 2.0]])
    score = np.array([1.0, -0.5])
    delta, dec, flat = newton_step(ai, score, np.ones(2))
    assert not flat and np.all(np.isfinite(delta))
    assert dec > 0


def test_parameter_without_information_is_reported_alone():
    ai = np.diag([3.0, 0.0, 1.0])
    dirs = null_directions(ai, np.ones(3))
    assert len(dirs) == 1 and dirs[0].top().tolist() == [1]
    text = describe(dirs[0], ["a", "units:trait!y2:y1", "c"], ["variance", "covariance", "variance"])
    assert text.startswith("units:trait!y2:y1 is not identified")


def test_combination_of_three_is_written_out():
    d = NullDirection(0.0, np.array([1.0, -0.5, 0.6, 0.0]))
    text = describe(d, ["A", "B", "C", "D"], ["variance"] * 4)
    assert "A" in text and "B" in text and "C" in text and "D" not in text


def test_duplicate_and_dependent_traits_are_found():
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((30, 3))
    assert duplicate_traits(Y, ["a", "b", "c"]) is None
    Y2 = Y.copy()
    Y2[:, 2] = 3 * Y[:, 0] - 1
    Y2[5, 0] = np.nan
    traits, text = duplicate_traits(Y2, ["a", "b", "c"])
    assert traits == ["a", "c"] and "exact copies" in text
    Y3 = Y.copy()
    Y3[:, 2] = Y[:, 0] + 2 * Y[:, 1]
    traits, text = duplicate_traits(Y3, ["a", "b", "c"])
    assert traits == ["a", "b", "c"] and "linearly dependent" in text


# ---------------------------------------------------------------- starting values
def test_tidy_correlation_is_positive_definite_and_bounded():
    R = np.array([[1.0, 0.99, -0.99], [0.99, 1.0, 0.99], [-0.99, 0.99, 1.0]])   # indefinite
    T = _tidy_correlation(R, 1e-3)
    assert np.linalg.eigvalsh(T)[0] > 0
    np.testing.assert_allclose(np.diag(T), 1.0)
    assert np.abs(T - np.eye(3)).max() <= 0.95 + 1e-12


def test_default_start_carries_the_phenotypic_correlation(seed_fit):
    data, _, _ = seed_fit
    res = _fit(SEED_FIXED, data=data, maxiter=0, **SEED_MODEL)
    start = res.covariance("units").to_numpy()
    Y = data[TRAITS].to_numpy()
    P = np.cov(Y - Y.mean(axis=0), rowvar=False, ddof=0)
    np.testing.assert_allclose(start, 0.5 * P, rtol=1e-6)                    # half to the residual
    ril = res.covariance("RIL").to_numpy()
    np.testing.assert_allclose(ril, 0.25 * P, rtol=1e-6)                     # the rest split in two
    blk = res.covariance("Block").to_numpy()
    np.testing.assert_allclose(blk, np.diag(np.diag(0.25 * P)), rtol=1e-6)  # diag keeps variances
    assert not res.converged and "did not converge in 0 iterations" in res.reason


@pytest.mark.parametrize("bad, message", [
    ({"RIL": np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])}, "not positive definite"),
    ({"RIL": pd.DataFrame(np.eye(2), index=["HD", "HT"], columns=["HD", "HT"])}, "lacks traits ['GY']"),
    ({"RIL": np.eye(2)}, "has shape (2, 2), expected (3, 3)"),
    ({"Family": np.eye(3)}, "not in the model"),
    ({"units": "big"}, "is the string"),
    ("sideways", "init='sideways'"),
])
def test_bad_starting_values_are_refused(seed_fit, bad, message):
    data, _, _ = seed_fit
    with pytest.raises(StartingValueError, match=None) as info:
        _fit(SEED_FIXED, data=data, init=bad, **SEED_MODEL)
    assert message in str(info.value)


def test_formula_init_values_are_used():
    data = seed_trial()
    res = _fit("HD ~ 1", random="~ idv(Block, init=0.7) + RIL", data=data, maxiter=0)
    assert res.varcomp.loc["Block", "estimate"] == 0.7


def test_sub_model_keeps_the_term_structure():
    fs = parse_fixed("cbind(a, b, c) ~ trait + at(trait, b):x")
    rs = parse_random("~ corgh(trait):F + at(trait, c):B", fs.response)
    res = parse_residual("~ units:us(trait)", fs.response)
    f1, r1, e1 = sub_model(fs, rs, res, ("a",))
    assert f1.response.traits == ("a",) and not f1.response.multivariate
    assert [t.traits for t in f1.terms] == [("a",)]              # at(trait, b):x is dropped
    assert [(t.name, t.structure) for t in r1.terms] == [("F", "diag")]
    assert e1.structure == "diag"
    f2, r2, e2 = sub_model(fs, rs, res, ("b", "c"))
    assert [(t.name, t.structure, t.traits) for t in r2.terms] == [("F", "corgh", None), ("B", "diag", ("c",))]
    assert e2.structure == "us"


# ---------------------------------------------------------------- the seed reader's trial
def test_seed_trial_converges_and_names_the_boundary(seed_fit):
    _, res, caught = seed_fit
    assert res.converged and res.iterations < 30
    ril = res.covariance("RIL").to_numpy()
    sd = np.sqrt(np.diag(ril))
    assert np.linalg.eigvalsh(ril / np.outer(sd, sd))[0] < 1e-4               # singular, held there
    assert res.covariance("RIL").loc["GY", "GY"] < 1e-3                      # GY: (almost) none
    vc = res.varcomp
    assert (vc.loc[vc["term"] == "RIL", "bound"] == "B").all()               # every component "B"
    assert (vc.loc[vc["term"] == "units", "bound"] != "B").all()
    text = [d for d in res.diagnostics if d.startswith("the RIL covariance matrix is singular")]
    assert len(text) == 1
    assert "(rank 2 of 3; the RIL effects of GY are an exact linear combination of those of" in text[0]
    assert any(issubclass(w.category, BoundaryWarning) and "RIL" in str(w.message) for w in caught)
    # the other genetic parameters are still estimated: genetic correlation HD-HT near its truth
    assert 0.3 < res.correlation("RIL").loc["HD", "HT"] < 0.7


def test_seed_trial_kkt_conditions_hold_at_the_solution(seed_fit):
    """At the solution (dense gradient, independent of the MME code): the gradient dlogL/dG of
    the held RIL matrix points outward along its null direction and vanishes along the
    others; the gradient of every free matrix vanishes."""
    from dense_opt import DenseREML, single_thread_blas

    from mvreml.api import _blocks
    from mvreml.design import build_design

    data, res, _ = seed_fit
    fs = parse_fixed(SEED_FIXED)
    resid = parse_residual(SEED_MODEL["residual"], fs.response)
    design = build_design(data, fs, parse_random(SEED_MODEL["random"], fs.response), resid)
    blocks = _blocks(design, resid)
    mats = [res.covariance(b.name).to_numpy() for b in blocks]
    with single_thread_blas():
        ll, (g_block, g_ril, g_units) = DenseREML(design, blocks).matrix_gradients(mats)
    assert ll == pytest.approx(res.loglik, abs=1e-6)
    d = np.sqrt(data[TRAITS].var().to_numpy())             # gradients on the traits' own scales
    g_ril, g_units = g_ril * np.outer(d, d), g_units * np.outer(d, d)
    w, V = np.linalg.eigh(mats[1] / np.outer(d, d))
    null, rest = V[:, :1], V[:, 1:]
    outward = float((null.T @ g_ril @ null)[0, 0])
    assert outward < -1.0
    assert np.abs(rest.T @ g_ril @ rest).max() < 1e-3
    assert np.abs(g_units).max() < 1e-3
    free = res.varcomp.loc[res.varcomp["term"] == "Block", "bound"].to_numpy() == "P"
    assert np.abs(np.diag(g_block)[free] * d[free] ** 2).max() < 1e-3


@pytest.mark.parametrize("how", ["x1000", "x0.001", "rho+0.99", "rho-0.99", "pairwise"])
def test_far_off_starting_values_reach_the_same_maximum(seed_fit, how):
    data, base, _ = seed_fit
    P = np.array([[30.0, 5.0, 1.0], [5.0, 50.0, 3.0], [1.0, 3.0, 0.6]])

    def frame(M):
        return pd.DataFrame(M, index=TRAITS, columns=TRAITS)

    if how.startswith("x"):
        f = float(how[1:])
        init = {"Block": frame(np.diag(np.diag(P)) * f * 0.1), "RIL": frame(P * f * 0.5),
                "units": frame(P * f * 0.5)}
    elif how.startswith("rho"):
        rho = float(how[3:])
        C = np.eye(3)
        C[0, 1] = C[1, 0] = rho
        C[1, 2] = C[2, 1] = rho if rho > 0 else 0.0
        C[0, 2] = C[2, 0] = rho if rho > 0 else 0.0
        sd = np.sqrt(np.diag(P))
        init = {"RIL": frame(0.5 * C * np.outer(sd, sd)), "units": frame(0.5 * C * np.outer(sd, sd))}
    else:
        init = "pairwise"
    res = _fit(SEED_FIXED, data=data, init=init, **SEED_MODEL)
    assert res.converged
    assert res.loglik == pytest.approx(base.loglik, abs=1e-5)
    np.testing.assert_allclose(res.covariance("RIL").to_numpy(), base.covariance("RIL").to_numpy(),
                               rtol=2e-3, atol=2e-3 * 20)


def test_iterations_are_bounded_and_say_so(seed_fit):
    data, _, _ = seed_fit
    with pytest.warns(mvreml.errors.ConvergenceWarning, match="did not converge in 2 iterations"):
        res = mvreml.fit(SEED_FIXED, data=data, maxiter=2, **SEED_MODEL)
    assert not res.converged and len(res.history) == 3


@pytest.mark.slow
def test_seed_trial_matches_an_independent_dense_optimum(seed_fit):
    from dense_opt import DenseREML

    from mvreml.api import _blocks
    from mvreml.design import build_design

    data, res, _ = seed_fit
    fs = parse_fixed(SEED_FIXED)
    resid = parse_residual(SEED_MODEL["residual"], fs.response)
    design = build_design(data, fs, parse_random(SEED_MODEL["random"], fs.response), resid)
    blocks = _blocks(design, resid)
    dense = DenseREML(design, blocks)
    starts = [[res.covariance(b.name).to_numpy() for b in blocks],
              [np.diag(BLOCK_VAR), RIL_COV + 0.5 * np.eye(3), RESIDUAL_COV]]
    best, mats = dense.maximise(starts)
    assert res.loglik >= best - 1e-5
    np.testing.assert_allclose(res.covariance("RIL").to_numpy(), mats[1], atol=2e-3 * 20)


def test_the_engine_sets_its_blas_threads(monkeypatch):
    """One BLAS thread for small equations, whatever the environment says; threads= overrides
    (capped at the cores this process may use) for the numeric work of a large factor only,
    the steps' small dense algebra staying on one thread; a bad value is an ArgumentError."""
    from contextlib import contextmanager

    from threadpoolctl import threadpool_info

    import mvreml
    from mvreml import _threads, chol
    from mvreml.likelihood import REMLModel

    def openblas():
        return {i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"}

    seen, numeric = [], []
    evaluate = REMLModel.evaluate
    threads_for = chol._threads_for

    def spy(self, *a, **kw):
        seen.append(openblas())
        return evaluate(self, *a, **kw)

    @contextmanager
    def spy_numeric(flops):
        with threads_for(flops):
            numeric.append(openblas())
            yield

    monkeypatch.setattr(REMLModel, "evaluate", spy)
    monkeypatch.setattr(chol, "_threads_for", spy_numeric)
    before = openblas()
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": rng.integers(0, 10, 80).astype(str), "y": rng.standard_normal(80)})
    res = mvreml.fit("y ~ 1", random="~ g", data=df)
    assert res.model["blas_threads"] == 1 and seen and all(s == {1} for s in seen)
    assert numeric and all(s == {1} for s in numeric)
    seen.clear(), numeric.clear()
    res = mvreml.fit("y ~ 1", random="~ g", data=df, threads=2)
    n = min(2, _threads.available_cores())
    assert res.model["blas_threads"] == n
    # a small factor (below THREADED_FLOPS): one thread for everything still
    assert all(s == {1} for s in seen) and numeric and all(s == {1} for s in numeric)
    seen.clear(), numeric.clear()
    monkeypatch.setattr(chol, "THREADED_FLOPS", 0.0)      # as if the factor were large
    res = mvreml.fit("y ~ 1", random="~ g", data=df, threads=2)
    assert all(s == {1} for s in seen)
    assert numeric and all(s == {n} for s in numeric)
    assert openblas() == before        # the limits of the caller are restored after the fit
    assert _threads.choose(None, 10**6) == _threads.available_cores()
    with pytest.raises(mvreml.errors.ArgumentError, match="threads=0"):
        mvreml.fit("y ~ 1", random="~ g", data=df, threads=0)
