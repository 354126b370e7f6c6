"""lme4's classic REML fits (shared/data/lme4_nlme/SOURCE.md): published numbers."""

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.errors import BoundaryWarning


def _read(data_dir, name):
    return pd.read_csv(data_dir / "lme4_nlme" / f"{name}.csv")


def test_dyestuff(data_dir):
    res = mvreml.fit("Yield ~ 1", random="~ Batch", data=_read(data_dir, "Dyestuff"))
    assert res.converged
    assert -2 * res.loglik == pytest.approx(319.654276842342, rel=1e-9)
    vc = res.varcomp["estimate"]
    assert vc["Batch"] == pytest.approx(1764.05, rel=1e-6)       # exact balanced ANOVA = REML
    assert vc["units"] == pytest.approx(2451.25, rel=1e-6)
    assert res.fixef.loc["(Intercept)", "estimate"] == pytest.approx(1527.5, rel=1e-9)
    assert res.fixef.loc["(Intercept)", "std_error"] ** 2 == pytest.approx(375.714676744, rel=1e-5)
    assert list(res.varcomp["bound"]) == ["P", "P"]


def test_dyestuff2_boundary(data_dir):
    with pytest.warns(BoundaryWarning, match="Batch"):
        res = mvreml.fit("Yield ~ 1", random="~ Batch", data=_read(data_dir, "Dyestuff2"))
    assert res.converged
    assert -2 * res.loglik == pytest.approx(161.8283, abs=5e-5)
    assert res.varcomp.loc["Batch", "bound"] == "B"
    assert res.varcomp.loc["Batch", "estimate"] < 1e-5
    assert np.sqrt(res.varcomp.loc["units", "estimate"]) == pytest.approx(3.716, abs=5e-4)
    assert res.fixef.loc["(Intercept)", "estimate"] == pytest.approx(5.6656, abs=1e-4)
    assert any("Batch" in d and "boundary" in d for d in res.diagnostics)


def test_penicillin_crossed(data_dir):
    res = mvreml.fit("diameter ~ 1", random="~ plate + sample", data=_read(data_dir, "Penicillin"))
    assert res.converged
    assert -2 * res.loglik == pytest.approx(330.860589, abs=2e-6)
    vc = res.varcomp["estimate"]
    # balanced crossed design: REML = ANOVA estimates (SOURCE.md, computed exactly)
    assert vc["plate"] == pytest.approx(0.7169082126, rel=1e-6)
    assert vc["sample"] == pytest.approx(3.7309178744, rel=1e-6)
    assert vc["units"] == pytest.approx(0.3024154589, rel=1e-6)
    assert res.fixef.loc["(Intercept)", "estimate"] == pytest.approx(22.9722222222251, rel=1e-9)


def test_asreml_loglik_convention(data_dir):
    res = mvreml.fit("Yield ~ 1", random="~ Batch", data=_read(data_dir, "Dyestuff"))
    n_p = res.n_obs - res.rank_x
    assert res.loglik_asreml == pytest.approx(res.loglik + 0.5 * n_p * np.log(2 * np.pi), rel=1e-12)
