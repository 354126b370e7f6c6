"""The CHOLMOD adapter: scikit-sparse 0.4 here; the 0.5 code path checked against a stand-in.

scikit-sparse 0.5 (Debian 13) cannot be built on this SuiteSparse 5 machine, so its
``CholeskyFactor`` is imitated on top of 0.4 with exactly the members the adapter uses
(constructor with order / supernodal_mode, factorize, solve, factor, perm, N). A fit through
the adapter must equal the fit through 0.4 directly.
"""
import types

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sksparse import cholmod as sk04

import mvreml
import mvreml.cholmod as cm


class _StandIn05:
    """scikit-sparse 0.5's CholeskyFactor surface, on 0.4 (LL', simplicial after factorize)."""

    def __init__(self, A, *, order="default", supernodal_mode="auto", lower=True):
        assert isinstance(A, sp.csc_array)
        self._A = A
        self._order = order
        # 0.5 factorizes LL' (not 0.4's simplicial LDL'), so an indefinite matrix fails
        self._mode = "supernodal" if supernodal_mode == "auto" else supernodal_mode
        self._f = None

    def factorize(self, A, ldl=False, beta=0.0):
        assert ldl is False
        if self._f is None:
            self._f = sk04.analyze(sp.csc_matrix(self._A), mode=self._mode, ordering_method=self._order)
        self._f.cholesky_inplace(sp.csc_matrix(A), beta=beta)
        return self

    @property
    def factor(self):
        return sp.csc_array(self._f.L())

    @property
    def perm(self):
        return self._f.P()

    @property
    def N(self):
        return self._A.shape[0]

    def solve(self, b):
        x = self._f(sp.csc_matrix(b) if sp.issparse(b) else b)
        return sp.csc_array(x) if sp.issparse(x) else x


@pytest.fixture
def api05(monkeypatch):
    """The 0.5 code path: the real one where 0.5 is installed (Debian 13), else the stand-in."""
    if cm.API == 5:
        return
    fake = types.SimpleNamespace(CholeskyFactor=_StandIn05, CholmodError=sk04.CholmodError,
                                 CholmodNotPositiveDefiniteError=sk04.CholmodNotPositiveDefiniteError,
                                 CholmodWarning=UserWarning)
    monkeypatch.setattr(cm, "_sk", fake)
    monkeypatch.setattr(cm, "API", 5)


def _spd(n=40, seed=0):
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=0.1, random_state=rng)
    A = A @ A.T + n * sp.identity(n)
    return sp.csc_matrix(sp.tril(A))


def test_installed_api_is_detected():
    assert cm.API == (5 if hasattr(sk04, "CholeskyFactor") else 4)


@pytest.mark.parametrize("use05", [False, True])
def test_factor_interface(request, use05):
    if use05:
        request.getfixturevalue("api05")
    low = _spd()
    full = (low + sp.tril(low, -1).T).toarray()
    f = cm.analyze(low, mode="supernodal", ordering_method="amd")
    f.cholesky_inplace(low)
    b = np.arange(40.0)
    np.testing.assert_allclose(f(b), np.linalg.solve(full, b), rtol=1e-10)
    np.testing.assert_allclose(f(sp.identity(40, format="csc")).toarray(), np.linalg.inv(full), atol=1e-12)
    assert f.logdet() == pytest.approx(np.linalg.slogdet(full)[1], rel=1e-12)
    L, p = f.L().toarray(), np.asarray(f.P())
    np.testing.assert_allclose(L @ L.T, full[np.ix_(p, p)], atol=1e-10)
    with pytest.raises(cm.CholmodNotPositiveDefiniteError):
        f.cholesky_inplace(low - 1000 * sp.identity(40, format="csc"))


def test_fit_through_the_05_path_equals_04(api05, data_dir):
    ped = pd.read_csv(data_dir / "gryphon_wam" / "gryphonped.csv")
    g = pd.read_csv(data_dir / "gryphon_wam" / "gryphon.csv").dropna(subset=["bwt"])
    res05 = mvreml.fit("bwt ~ 1", random="~ vm(animal, ped)", data=g, relmat={"ped": ped})
    assert isinstance(cm.analyze(_spd()), cm._Factor05)
    assert res05.varcomp.loc["animal", "estimate"] == pytest.approx(3.395398, rel=5e-5)
    assert res05.loglik_asreml == pytest.approx(-1247.183, abs=1e-3)
