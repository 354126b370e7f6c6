"""mvreml.plan: column counts of L against real factors, the plan's sizes against the fit's,
the memory check (ResourceError) and the readers of the memory available."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import mvreml
from mvreml import _forecast, _memory, likelihood
from mvreml.cholmod import cholesky
from mvreml.errors import ArgumentError, ResourceError
from mvreml.symbolic import factor_sizes

BIVARIATE = dict(fixed="cbind(bwt, tarsus) ~ trait + at(trait):sex", random="~ us(trait):vm(animal, ped)",
                 residual="~ units:us(trait)")


def _random_spd(rng, n, density):
    A = sp.random(n, n, density=density, random_state=int(rng.integers(2**31)))
    A = A + A.T + sp.identity(n) * (n + 1.0)
    return sp.tril(sp.csc_matrix(A), format="csc")


@pytest.mark.parametrize("seed", range(12))
def test_column_counts_are_those_of_the_real_factor(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    low = _random_spd(rng, n, rng.uniform(0.002, 0.06))
    f = cholesky(low, mode="simplicial")
    sizes = factor_sizes(low.indptr, low.indices, f.P())
    real = np.diff(sp.csc_matrix(f.L()).indptr)
    np.testing.assert_array_equal(sizes.counts, real)
    assert sizes.nnz_l == f.L().nnz
    assert sizes.flops == float(real.astype(float) @ real)


@pytest.mark.parametrize("seed", range(8))
def test_the_relaxed_supernodes_store_what_cholmod_stores(seed):
    # a supernodal factor's L() keeps the explicit zeros of CHOLMOD's relaxed supernodes
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(50, 600))
    low = _random_spd(rng, n, rng.uniform(0.005, 0.05))
    f = cholesky(low, mode="supernodal")
    sizes = factor_sizes(low.indptr, low.indices, f.P())
    assert sizes.super_lower == f.L().nnz
    assert sizes.super_lower >= sizes.nnz_l


@pytest.mark.parametrize("relax", [((4, 16, 48), (0.8, 0.1, 0.05)), ((16, 48, 96), (0.8, 0.2, 0.05)),
                                   ((0, 0, 0), (0.0, 0.0, 0.0)), ((32, 64, 128), (0.9, 0.5, 0.2))])
def test_the_supernodes_follow_the_relaxation_the_engine_analyses_with(relax):
    from mvreml.chol import SupernodalFactor

    rng = np.random.default_rng(31)
    for _ in range(3):
        low = _random_spd(rng, int(rng.integers(100, 700)), rng.uniform(0.004, 0.03))
        f = SupernodalFactor(low, nrelax=relax[0], zrelax=relax[1])
        info = f.analysis()
        assert (info["nrelax"], info["zrelax"]) == relax
        sizes = factor_sizes(low.indptr, low.indices, f.P(), nrelax=relax[0], zrelax=relax[1])
        assert sizes.super_values == info["xsize"]
        assert sizes.n_supernodes == info["nsuper"]
        f.factorize(low)
        dense = (low + sp.tril(low, -1).T).toarray()
        assert f.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)


def test_counts_under_any_permutation_and_a_pattern_without_diagonal():
    rng = np.random.default_rng(7)
    n = 120
    low = _random_spd(rng, n, 0.03)
    perm = rng.permutation(n)
    B = sp.csc_matrix((low + sp.tril(low, -1).T)[perm][:, perm])
    f = cholesky(sp.tril(B, format="csc"), mode="simplicial", ordering_method="natural")
    strict = sp.tril(low, -1, format="csc")          # the diagonal is always in L
    assert factor_sizes(strict.indptr, strict.indices, perm).nnz_l == f.L().nnz


def test_bad_permutations_are_refused():
    low = _random_spd(np.random.default_rng(1), 10, 0.2)
    with pytest.raises(ValueError, match="permutation"):
        factor_sizes(low.indptr, low.indices, np.zeros(10, int))
    with pytest.raises(ValueError, match="entries"):
        factor_sizes(low.indptr, low.indices, np.arange(9))


class _Spy:
    """What the fit's model factorizes: the order and pattern of C, the stored factor."""

    def __init__(self, monkeypatch):
        self.seen = {}
        factorize = likelihood.REMLModel._factorize

        def spy(model, C):
            out = factorize(model, C)
            self.seen.setdefault("n_eq", C.shape[0])
            self.seen.setdefault("nnz_c", C.nnz)
            self.seen.setdefault("analysis", model.factor.analysis())   # CHOLMOD's own figures
            return out

        monkeypatch.setattr(likelihood.REMLModel, "_factorize", spy)


def test_plan_sizes_are_those_the_fit_uses(gryphon_data, monkeypatch):
    g, ped = gryphon_data
    spy = _Spy(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = mvreml.plan(**BIVARIATE, data=g, relmat={"ped": ped})
        res = mvreml.fit(**BIVARIATE, data=g, relmat={"ped": ped}, maxiter=2)
    assert p.equations == spy.seen["n_eq"] == res.model["forecast"]["equations"]
    assert p.nnz_c == spy.seen["nnz_c"]
    # the column counts and relaxed supernodes reproduce CHOLMOD's analysis of the fit's C
    assert p.nnz_l == spy.seen["analysis"]["lnz"]
    assert p.sizes.super_values == spy.seen["analysis"]["xsize"]
    assert p.nnz_l == res.model["forecast"]["nnz_l"]
    assert p.flops == pytest.approx(float(p.sizes.counts.astype(float) @ p.sizes.counts))
    assert p.seconds_per_iterate > 0 and set(p.seconds) == {"factorization", "selected inverse", "solves"}
    assert p.peak_bytes >= p.rss_now + sum(p.memory.values()) - 1
    text = repr(p)
    assert f"{p.equations:,}" in text and "nnz(L)" in text and "forecast peak memory" in text


def test_plan_checks_the_data_as_fit_does(gryphon_data):
    g, ped = gryphon_data
    with pytest.raises(mvreml.errors.FormulaError):
        mvreml.plan("bwt ~ 1 + nosuchcolumn", random="~ vm(animal, ped)", data=g, relmat={"ped": ped})
    with pytest.raises(ArgumentError):
        mvreml.plan(**BIVARIATE, data=g, relmat={"ped": ped}, check_memory="yes")


def test_a_fit_that_does_not_fit_in_memory_is_refused_before_factorizing(gryphon_data, monkeypatch):
    g, ped = gryphon_data
    monkeypatch.setattr(_forecast._memory, "available_bytes", lambda: 1000)
    calls = []
    monkeypatch.setattr(likelihood.REMLModel, "evaluate", lambda *a, **k: calls.append(a))
    with pytest.raises(ResourceError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mvreml.fit(**BIVARIATE, data=g, relmat={"ped": ped})
    err = info.value
    assert calls == []                                  # no numeric work was done
    assert err.available == 1000 and err.needed > 1000 and err.plan.equations > 0
    msg = str(err)
    for words in ("only 1 kB is available", "forecast peak", "equations", "fewer traits", 'backend="mumps"',
                  "check_memory=False"):
        assert words in msg
    assert isinstance(err, MemoryError) and isinstance(err, mvreml.errors.MvremlError)


def test_check_memory_false_fits_anyway(gryphon_data, monkeypatch):
    g, ped = gryphon_data
    monkeypatch.setattr(_forecast._memory, "available_bytes", lambda: 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mvreml.fit(**BIVARIATE, data=g, relmat={"ped": ped}, check_memory=False, maxiter=2)
    assert res.iterations == 2 and "forecast" not in res.model


def test_the_fit_reuses_the_plans_symbolic_analysis(gryphon_data, monkeypatch):
    import mvreml.chol as chol

    g, ped = gryphon_data
    calls = []
    init = chol.SupernodalFactor.__init__

    def counted(self, *a, **k):
        calls.append(1)
        init(self, *a, **k)

    monkeypatch.setattr(chol.SupernodalFactor, "__init__", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mvreml.fit(**BIVARIATE, data=g, relmat={"ped": ped}, maxiter=1)
    assert "forecast" in res.model          # the forecast ran, and its analysis is the fit's
    assert calls == [1]


# ------------------------------------------------------------------ the memory available
def test_memavailable_and_the_cgroup_limit(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemFree:  100 kB\nMemAvailable:   2000000 kB\n")
    monkeypatch.setattr(_memory, "_MEMINFO", str(meminfo))
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(_memory, "_CGROUP_ROOT", str(root))
    monkeypatch.setattr(_memory, "_cgroup_dirs", lambda: [(str(root), "memory.max", "memory.current")])
    assert _memory.meminfo_available() == 2000000 * 1024
    assert _memory.available_bytes() == 2000000 * 1024      # no cgroup files: MemAvailable
    (root / "memory.max").write_text("max\n")
    assert _memory.available_bytes() == 2000000 * 1024      # an unlimited cgroup
    (root / "memory.max").write_text(str(1 << 30))
    (root / "memory.current").write_text(str(1 << 28))
    assert _memory.cgroup_room() == (1 << 30, (1 << 30) - (1 << 28))
    assert _memory.available_bytes() == (1 << 30) - (1 << 28)   # the cgroup is the tighter


def test_cgroup_v1_files(tmp_path, monkeypatch):
    v1 = tmp_path / "memory"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")    # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("4599963648\n")
    monkeypatch.setattr(_memory, "_cgroup_dirs",
                        lambda: [(str(v1), "memory.limit_in_bytes", "memory.usage_in_bytes")])
    assert _memory.cgroup_room() == (None, None)
    (v1 / "memory.limit_in_bytes").write_text(str(8 << 30))
    assert _memory.cgroup_room() == (8 << 30, (8 << 30) - 4599963648)


def test_this_process_reads_its_own_memory():
    assert _memory.rss_bytes() > 10 << 20
    assert _memory.peak_rss_bytes() >= _memory.rss_bytes() // 2
    assert _memory.available_bytes() is None or _memory.available_bytes() > 0
    assert _memory.human(1.5e9) == "1.5 GB" and _memory.human(None) == "unknown"


def test_an_array_model_checks_its_memory_before_the_first_fit(monkeypatch):
    """Model.fit refuses as mvreml.fit does (ResourceError before any numeric work), keeps the
    forecast on the Result, is not checked again on a refit (same analysis), and check_memory=False
    fits anyway."""
    rng = np.random.default_rng(3)
    n, q = 400, 60
    Z = sp.csr_matrix((np.ones(n), (np.arange(n), rng.integers(0, q, n))), shape=(n, q))
    y = Z @ rng.standard_normal(q) + rng.standard_normal(n)
    model = mvreml.Model(y, np.ones((n, 1)), random=[mvreml.Random(Z, mvreml.structures.Idv(1), name="g")])
    res = model.fit()
    assert res.model["forecast"]["equations"] == q + 1
    monkeypatch.setattr(_forecast._memory, "available_bytes", lambda: 1000)
    assert "forecast" not in model.refit(y + 1.0).model             # the analysis is the first fit's
    fresh = mvreml.Model(y, np.ones((n, 1)), random=[mvreml.Random(Z, mvreml.structures.Idv(1), name="g")])
    calls = []
    evaluate = likelihood.REMLModel.evaluate
    monkeypatch.setattr(likelihood.REMLModel, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    with pytest.raises(ResourceError, match="only 1 kB is available") as info:
        fresh.fit()
    assert calls == [] and info.value.plan.equations == q + 1
    with pytest.raises(ArgumentError, match="check_memory"):
        fresh.fit(check_memory="no")
    res = fresh.fit(check_memory=False, maxiter=2)
    assert res.iterations == 2 and "forecast" not in res.model
