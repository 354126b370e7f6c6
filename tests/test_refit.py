"""Refits of one design (issue 15): what they reuse, and that they reach the fresh fit."""
import numpy as np
import pytest
import scipy.sparse as sp

import mvreml
from mvreml._lsq import FixedLeastSquares
from mvreml.start import unit_residuals
from mvreml.structures import US
from test_model import _small, assert_same_fit


def _model(Y, X, Z):
    return mvreml.Model(Y, X, random=[mvreml.Random(Z, US(2), name="fam")])


def test_refit_cold_and_warm_reach_the_fresh_fit():
    Y, Z, lv = _small(seed=4, n=200, q=25)
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(len(Y)), rng.normal(size=len(Y))])
    base = _model(Y, X, Z)
    first = base.fit()
    Y2 = np.where(np.isnan(Y), np.nan, Y + 0.5 * rng.normal(size=Y.shape))
    fresh = _model(Y2, X, Z).fit()
    cold = base.refit(Y2)
    # the residuals after X come from a Cholesky factor of X'X instead of LSQR: equal to rounding
    assert_same_fit(fresh, cold, tol=1e-9)
    assert cold.history["loglik"].iloc[0] == pytest.approx(fresh.history["loglik"].iloc[0], rel=1e-12)
    # warm: starts at the estimates of the model's last fit (not at the refit's) ...
    warm = base.refit(Y2, warm=True)
    start = base.with_response(Y2).loglik(first.varcomp["estimate"].to_numpy())
    assert warm.history["loglik"].iloc[0] == pytest.approx(start, rel=1e-12)
    assert warm.history["loglik"].iloc[0] != pytest.approx(fresh.history["loglik"].iloc[0], rel=1e-6)
    # ... and reaches the fresh fit's optimum to the convergence tolerance
    assert warm.converged
    assert warm.loglik == pytest.approx(fresh.loglik, rel=1e-9)
    np.testing.assert_allclose(warm.varcomp["estimate"], fresh.varcomp["estimate"], rtol=1e-3, atol=1e-6)
    # a refit does not move the start of the next one: refits do not depend on their order
    Y3 = np.where(np.isnan(Y), np.nan, Y + 0.5 * rng.normal(size=Y.shape))
    warm3 = base.refit(Y3, warm=True)
    start3 = base.with_response(Y3).loglik(first.varcomp["estimate"].to_numpy())
    assert warm3.history["loglik"].iloc[0] == pytest.approx(start3, rel=1e-12)
    # init= wins over warm
    given = base.refit(Y3, warm=True, init=warm.varcomp["estimate"].to_numpy())
    assert given.history["loglik"].iloc[0] == pytest.approx(
        base.with_response(Y3).loglik(warm.varcomp["estimate"].to_numpy()), rel=1e-12)
    with pytest.raises(mvreml.errors.ArgumentError, match="call fit"):
        _model(Y, X, Z).refit(Y2, warm=True)


def test_fixed_least_squares_equals_lsqr_and_falls_back_when_rank_deficient():
    Y, Z, lv = _small(seed=5)
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(len(Y)), rng.normal(size=len(Y)), rng.integers(0, 3, len(Y))])
    m = _model(Y, X, Z)
    d = m.design
    ls = FixedLeastSquares(d.X)
    assert ls.factor is not None
    np.testing.assert_allclose(ls.unit_residuals(d), unit_residuals(d), rtol=1e-9, atol=1e-11)
    # a rank-deficient X (not from a Design): no factor, LSQR's answer
    bad = FixedLeastSquares(sp.csr_matrix(np.column_stack([np.ones(10), np.ones(10)])))
    assert bad.factor is None


def test_refit_without_the_fixed_effects_covariance():
    Y, Z, lv = _small(seed=6)
    X = np.ones((len(Y), 1))
    base = _model(Y, X, Z)
    base.fit()
    Y2 = np.where(np.isnan(Y), np.nan, Y + np.random.default_rng(4).normal(size=Y.shape))
    full = base.refit(Y2)
    lean = base.refit(Y2, fixef_vcov=False)
    assert full.fixef_vcov is not None and lean.fixef_vcov is None
    assert lean.loglik == full.loglik
    np.testing.assert_array_equal(lean.varcomp["estimate"], full.varcomp["estimate"])
    np.testing.assert_array_equal(lean.fixef["std_error"], full.fixef["std_error"])
    with pytest.raises(mvreml.errors.ModelError, match="fixef_vcov=False"):
        lean.wald()
