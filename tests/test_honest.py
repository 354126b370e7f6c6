"""A fit says what it is: the result describes the theta it reports, and degenerate data
(nothing left to estimate, no residual degrees of freedom, extreme weights) are named
instead of being reported as a converged fit.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml import reml
from mvreml._steps import Iteration
from mvreml.errors import ConvergenceWarning, DataError, ModelError


def _families(seed=7, n_fam=25, per=6, t=2):
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_fam), per)
    u = rng.standard_normal((n_fam, t)) @ np.array([[1.0, 0.4], [0.0, 0.8]])[:t, :t]
    e = rng.standard_normal((len(fam), t)) @ np.array([[1.2, 0.3], [0.0, 1.0]])[:t, :t]
    x = rng.standard_normal(len(fam))
    y = 5.0 + 0.5 * x[:, None] + u[fam] + e
    df = pd.DataFrame({"Family": [f"F{f:02d}" for f in fam], "x": x,
                       "sex": np.where(rng.random(len(fam)) < 0.5, "M", "F")})
    for j in range(t):
        df[f"y{j + 1}"] = y[:, j]
    return df


def _quiet(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mvreml.fit(*args, **kw)


# ---------------------------------------------------------------- the reported theta
def _end_on_rejected_em(monkeypatch, after=2):
    """From iteration `after` on, no AI step is found and EM proposes a worse point: the fit
    stops there, its last factorization being that of the rejected EM candidate."""
    calls = {"n": 0}
    line_search = reml._line_search

    def no_ai_step(run, ev, theta, space, delta):
        calls["n"] += 1
        if calls["n"] > after:
            return None, theta, run.holds.reduced, "EM"
        return line_search(run, ev, theta, space, delta)

    def bad_em(self, ev, theta):
        return theta * 4.0, dict(self.holds.reduced)     # all variances x4: feasible, worse

    monkeypatch.setattr(reml, "_line_search", no_ai_step)
    monkeypatch.setattr(Iteration, "em", bad_em)


@pytest.mark.parametrize("traits", [1, 2])
def test_a_fit_ending_on_a_rejected_step_reports_its_own_theta(monkeypatch, traits):
    df = _families()
    if traits == 1:
        model = dict(fixed="y1 ~ 1 + x + sex", random="~ Family")
    else:
        model = dict(fixed="cbind(y1, y2) ~ trait + at(trait):x + at(trait):sex",
                     random="~ us(trait):Family", residual="~ units:us(trait)")
    _end_on_rejected_em(monkeypatch)
    with pytest.warns(ConvergenceWarning, match="neither the AI step nor an EM step"):
        res = mvreml.fit(**model, data=df)
    assert not res.converged and res.iterations == 3 and res.history["step"].iloc[-1] != "EM"
    monkeypatch.undo()
    # a fresh evaluation at the reported theta: every term fixed at the reported values
    init = {term: res.covariance(term).to_numpy() for term in ("Family", "units")}
    known = _quiet(**model, data=df, init=init, fix=["Family", "units"])
    assert known.loglik == pytest.approx(res.loglik, abs=1e-9)
    np.testing.assert_allclose(res.fixef["estimate"], known.fixef["estimate"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.fixef["std_error"], known.fixef["std_error"], rtol=1e-9)
    np.testing.assert_allclose(res.fixef_vcov, known.fixef_vcov, rtol=1e-9, atol=1e-14)
    pev = [c for c in res.blup("Family").columns if c.startswith("pev_")]
    np.testing.assert_allclose(res.blup("Family")[pev], known.blup("Family")[pev], rtol=1e-9)


def test_the_model_factor_is_at_the_reported_theta_after_iterate(monkeypatch):
    """The engine's own state: after iterate the held factor belongs to state.theta."""
    from mvreml import model as api      # mvreml.fit reports through mvreml.Model._fit

    seen = {}
    build = api.build_result

    def spy(model, state, *args, **kw):
        seen["at"] = model.factorized_at(state.theta)
        return build(model, state, *args, **kw)

    _end_on_rejected_em(monkeypatch, after=2)
    monkeypatch.setattr(api, "build_result", spy)
    _quiet("y1 ~ 1 + x", random="~ Family", data=_families())
    assert seen["at"] is True


# ---------------------------------------------------------------- nothing to estimate
def test_a_constant_response_is_refused_not_converged():
    df = _families()
    df["y1"] = 3.0
    for random in (None, "~ Family"):
        with pytest.raises(ModelError, match="response 'y1' is constant.*no REML estimate exists"):
            mvreml.fit("y1 ~ 1 + x", random=random, data=df)
    with pytest.raises(ModelError, match="response 'y1' is constant"):
        mvreml.fit("cbind(y1, y2) ~ trait", random="~ us(trait):Family", data=df)


def test_a_response_fitted_exactly_by_the_covariates_is_refused():
    df = _families()
    df["y1"] = 2.0 - 0.25 * df["x"]
    with pytest.raises(ModelError, match="'y1' is an exact linear function of the fixed effects"):
        mvreml.fit("y1 ~ 1 + x", random="~ Family", data=df)


def test_no_residual_degrees_of_freedom_is_refused():
    df = _families().iloc[:12].copy()
    df["id"] = [f"r{i}" for i in range(len(df))]
    with pytest.raises(ModelError, match="no residual degrees of freedom: 12 records and 12 fixed-effect columns"):
        mvreml.fit("y1 ~ id", data=df)
    with pytest.raises(ModelError, match="no residual degrees of freedom: 24 records and 24"):
        mvreml.fit("cbind(y1, y2) ~ trait:id", data=df)
    with pytest.raises(ModelError, match="no residual degrees of freedom: a single record"):
        mvreml.fit("y1 ~ 1", data=df.iloc[:1])


def test_a_trait_without_residual_degrees_of_freedom_is_named():
    df = _families()
    df.loc[df.index[1:], "y2"] = np.nan              # y2 observed once: its mean takes it all
    with pytest.raises(ModelError, match="trait 'y2' has no residual degrees of freedom: 1 records and 1"):
        mvreml.fit("cbind(y1, y2) ~ trait", random="~ us(trait):Family", data=df)


# ---------------------------------------------------------------- weights
def test_uniform_weights_only_rescale_the_residual():
    """R_i = R0 / w: weights all c give R0 times c, the same log L and the same genetic part
    (before, a residual start and scale blind to the weights gave a wrong optimum at c = 1e-6)."""
    df = _families()
    base = _quiet("y1 ~ 1 + x", random="~ Family", data=df)
    for c in (1e-6, 1e-40, 1e8):
        df["w"] = c
        res = _quiet("y1 ~ 1 + x", random="~ Family", data=df, weights="w")
        assert res.converged
        assert res.loglik == pytest.approx(base.loglik, abs=1e-6)
        ratio = res.varcomp["estimate"].to_numpy() / base.varcomp["estimate"].to_numpy()
        np.testing.assert_allclose(ratio, [1.0, c], rtol=1e-5)


def test_an_extreme_weight_is_named_with_its_row():
    df = _families()
    df["w"] = 1.0
    df.loc[df.index[7], "w"] = 1e300
    with pytest.raises(DataError, match="weights column 'w': row 7 has weight 1e\\+300, 1e\\+300 times the median"):
        mvreml.fit("y1 ~ 1", random="~ Family", data=df, weights="w")
    df["w"] = 1e200
    with pytest.raises(DataError, match="weights column 'w' has median 1e\\+200.*divide the weights by a constant"):
        mvreml.fit("y1 ~ 1", random="~ Family", data=df, weights="w")
    # a tiny weight is no error: the record's variance R0 / w is just large (its limit is not
    # the record dropped: log|R0 / w| still counts R0 once), and 1e-300 is already that limit
    df["w"] = 1.0
    fits = []
    for w in (1e-12, 1e-300):
        df.loc[df.index[7], "w"] = w
        fits.append(_quiet("y1 ~ 1", random="~ Family", data=df, weights="w"))
    assert all(r.converged for r in fits)
    np.testing.assert_allclose(fits[0].varcomp["estimate"], fits[1].varcomp["estimate"], rtol=1e-6)


def test_an_unreadable_factor_is_an_infeasible_point_not_a_factorization_error(monkeypatch):
    """A factorization CHOLMOD only warns about leaves a factor that cannot be read: that is C
    not numerically positive definite at that point, and the start says so."""
    from mvreml import chol
    from mvreml.errors import FactorizationError, StartingValueError

    def unreadable(*args, **kw):
        raise FactorizationError("no Cholesky factor to use: the factor is failed")

    monkeypatch.setattr(chol, "SupernodalInverse", unreadable)
    with pytest.raises(StartingValueError, match="mixed-model equations not numerically positive definite"):
        mvreml.fit("y1 ~ 1", random="~ Family", data=_families())
