"""CHOLMOD: the engine's own binding (mvreml.chol, mvreml._core.chol) and the scikit-sparse
adapter (mvreml.cholmod) that relmat and rank still use.

scikit-sparse 0.5 (Debian 13) cannot be built on this SuiteSparse 5 machine, so its
``CholeskyFactor`` is imitated on top of 0.4 with exactly the members the adapter uses
(constructor with order / supernodal_mode, factorize, solve, factor, perm, N). The engine's
iteration does not go through the adapter: a fit with the 0.5 stand-in in place is the same fit.
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


# ---------------------------------------------------------------------------- the engine's binding
from mvreml.chol import ORDERINGS, SupernodalFactor  # noqa: E402
from mvreml.errors import FactorizationError, NotPositiveDefiniteError  # noqa: E402


def _full(low):
    return (low + sp.tril(low, -1).T).toarray()


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_binding_logdet_and_solves(ordering):
    low = _spd(120, seed=3)
    full = _full(low)
    f = SupernodalFactor(low, ordering=ordering)
    assert f.state == "symbolic"
    f.factorize(low)
    assert f.state == "numeric"
    assert f.logdet() == pytest.approx(np.linalg.slogdet(full)[1], rel=1e-13)
    b = np.random.default_rng(4).normal(size=(120, 7))
    np.testing.assert_allclose(f.solve(b), np.linalg.solve(full, b), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(f(b[:, 0]), np.linalg.solve(full, b[:, 0]), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(f(sp.csc_matrix(b)), np.linalg.solve(full, b), rtol=1e-10, atol=1e-13)
    assert sorted(f.P()) == list(range(120))
    info = f.analysis()
    assert info["lnz"] >= np.count_nonzero(np.linalg.cholesky(full[np.ix_(f.P(), f.P())])) * 0.99
    assert info["flops"] > 0


def test_binding_full_symmetric_input_reads_the_lower_triangle():
    low = _spd(50, seed=5)
    f = SupernodalFactor(sp.csc_matrix(_full(low)))
    f.factorize(sp.csc_matrix(_full(low)))
    assert f.logdet() == pytest.approx(np.linalg.slogdet(_full(low))[1], rel=1e-13)


@pytest.mark.parametrize("ordering", ["amd", "natural", "metis"])
def test_binding_failing_column_is_named_in_the_original_order(ordering):
    """A negative pivot at original column 17: the error names 17, not its permuted position."""
    low = _spd(60, seed=6).tolil()
    low[17, 17] = -5.0
    low = low.tocsc()
    f = SupernodalFactor(low, ordering=ordering)
    with pytest.raises(NotPositiveDefiniteError, match="equation 17 ") as err:
        f.factorize(low)
    assert err.value.column == 17
    assert f.state == "failed"
    with pytest.raises(FactorizationError, match="failed"):
        f.solve(np.ones(60))
    ok = _spd(60, seed=6)
    f.factorize(ok)                    # the same factor recovers on a positive definite matrix
    assert f.logdet() == pytest.approx(np.linalg.slogdet(_full(ok))[1], rel=1e-13)


def test_binding_failing_column_uses_the_permutation():
    """With a permutation that moves column 3, the reported column is still 3."""
    low = _spd(30, seed=7).tolil()
    low[3, 3] = -1.0
    low = low.tocsc()
    f = SupernodalFactor(low, ordering="amd")
    position = int(np.flatnonzero(f.P() == 3)[0])
    with pytest.raises(NotPositiveDefiniteError) as err:
        f.factorize(low)
    assert err.value.column == 3
    assert f"position {position} " in str(err.value)


def test_binding_guards():
    low = sp.csc_matrix(sp.diags(np.arange(1.0, 21.0)))
    with pytest.raises(ValueError, match="ordering"):
        SupernodalFactor(low, ordering="nope")
    f = SupernodalFactor(low)
    with pytest.raises(FactorizationError, match="symbolic"):
        f.solve(np.ones(20))                   # analysed, never factorized
    other = low.tolil()
    other[19, 0] = 0.5                          # a pattern that was not analysed
    with pytest.raises(ValueError, match="not the one analysed"):
        f.factorize(other.tocsc())
    f.factorize(low)
    with pytest.raises(ValueError, match="shape"):
        f.solve(np.ones(19))


def test_binding_copy_is_independent():
    low = _spd(40, seed=9)
    f = SupernodalFactor(low)
    f.factorize(low)
    g = f.copy()
    f.factorize(low * 4.0)
    assert g.logdet() == pytest.approx(np.linalg.slogdet(_full(low))[1], rel=1e-13)
    assert f.logdet() == pytest.approx(np.linalg.slogdet(_full(low))[1] + 40 * np.log(4.0), rel=1e-13)


def test_binding_long_indices_and_version():
    from mvreml._core import chol

    assert chol.VERSION[0] >= 3
    f = SupernodalFactor(_spd(10))
    sup, pi, px, s = f._f.supernodes()
    assert sup.dtype == pi.dtype == px.dtype == s.dtype == np.int64
    f.factorize(_spd(10))
    x = f._f.values()
    assert x.base is not None and not x.flags.owndata      # a view of CHOLMOD's memory


def test_cholmods_openmp_teams_follow_the_thread_limit():
    # CHOLMOD 3 asks for num_threads(4) teams whatever omp_set_num_threads says: the engine
    # makes the runtime hold them to the limit while it factorizes, and restores it after
    from mvreml import _threads

    runtimes = _threads._openmp_runtimes()
    if not runtimes:
        pytest.skip("no OpenMP runtime loaded (CHOLMOD built without OpenMP)")
    rt = runtimes[0]
    levels, dynamic = rt.omp_get_max_active_levels(), rt.omp_get_dynamic()
    with _threads.blas_threads(1), _threads.openmp_within_limit():
        assert rt.omp_get_max_active_levels() == 0
    with _threads.blas_threads(2), _threads.openmp_within_limit():
        assert rt.omp_get_dynamic() == 1
    assert (rt.omp_get_max_active_levels(), rt.omp_get_dynamic()) == (levels, dynamic)
    low = _spd(80, seed=11)
    f = SupernodalFactor(low)
    with _threads.blas_threads(1):
        f.factorize(low)
    assert f.logdet() == pytest.approx(np.linalg.slogdet(_full(low))[1], rel=1e-13)
    assert (rt.omp_get_max_active_levels(), rt.omp_get_dynamic()) == (levels, dynamic)
