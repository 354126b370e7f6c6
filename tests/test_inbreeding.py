"""Inbreeding: the family kernel bit-for-bit equal to Meuwissen & Luo (one thread or
several), the tabular method over the animals alive on deep inbred lines, the choice
between them, and progress on the "mvreml" logger."""
import heapq
import logging
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml._inbreeding as pedmod
from mvreml.errors import PedigreeWarning
from mvreml.pedigree import Pedigree


def meuwissen_luo(sire, dam):
    """F by Meuwissen & Luo (1992): 1 + F_i = sum_j L_ij^2 d_j over i and its ancestors,
    visited by decreasing number (parents are numbered before offspring)."""
    n = len(sire)
    F, d = np.zeros(n), np.zeros(n)
    for i in range(n):
        d[i] = 0.5 - 0.25 * ((F[sire[i]] if sire[i] >= 0 else -1.0)
                             + (F[dam[i]] if dam[i] >= 0 else -1.0))
        if sire[i] < 0 or dam[i] < 0:
            continue
        lij, heap, acc = {i: 1.0}, [-i], 0.0
        while heap:
            j = -heapq.heappop(heap)
            x = lij.pop(j)
            acc += x * x * d[j]
            for p in (sire[j], dam[j]):
                if p >= 0:
                    if p not in lij:
                        lij[p] = 0.0
                        heapq.heappush(heap, -p)
                    lij[p] += 0.5 * x
        F[i] = acc - 1.0
    return F


def herd_pedigree(seed, n_gen=7, per_gen=240, n_herd=6):
    """Herds with overlapping generations: dams of the herd, mostly a few AI sires used across
    herds with many progeny, else natural-service sires of the herd with one or two;
    unknown parents, full sibs and some selfing (an animal used as sire and dam)."""
    rng = np.random.default_rng(seed)
    n = n_gen * per_gen
    herd = np.arange(n) % n_herd
    sire, dam = np.full(n, -1), np.full(n, -1)
    for g in range(1, n_gen):
        lo, hi = g * per_gen, (g + 1) * per_gen
        pool = np.arange(max(0, lo - 2 * per_gen), lo)
        ai = rng.choice(pool, size=4, replace=False)
        for i in range(lo, hi):
            local = pool[herd[pool] == herd[i]]
            dam[i] = rng.choice(local)
            sire[i] = rng.choice(ai) if rng.random() < 0.7 else rng.choice(local)
            if rng.random() < 0.05:
                sire[i] = dam[i]                                     # selfing
            elif i > lo and rng.random() < 0.1:
                sire[i], dam[i] = sire[i - 1], dam[i - 1]           # full sib of the previous
            if rng.random() < 0.1:
                sire[i] = -1
            if rng.random() < 0.1:
                dam[i] = -1
    return sire, dam


def build(sire, dam):
    lab = np.array([f"H{k}" for k in range(len(sire))] + [None], dtype=object)
    table = pd.DataFrame({"animal": lab[:-1], "sire": lab[sire], "dam": lab[dam]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PedigreeWarning)
        return Pedigree(table, allow_sire_dam=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_bitwise_meuwissen_luo_one_and_several_threads(seed, monkeypatch):
    sire, dam = herd_pedigree(seed)
    monkeypatch.setattr(pedmod, "_by_frontier", None)     # an ordinary herd: by families
    one = build(sire, dam)
    F = one.inbreeding.to_numpy()
    assert list(one.ids) == [f"H{k}" for k in range(len(sire))]    # already parents first
    ref = meuwissen_luo(sire, dam)
    assert F.max() > 0.2 and np.count_nonzero(F) > 300
    np.testing.assert_array_equal(F, ref)
    np.testing.assert_array_equal(one.d, 0.5 - 0.25 * (np.append(ref, -1.0)[sire]
                                                       + np.append(ref, -1.0)[dam]))
    # waves of batches shared by three threads, or one family per batch: the same bits
    monkeypatch.setattr(pedmod, "_THREADS_MIN_PROGENY", 0)
    monkeypatch.setattr(pedmod, "_threads", lambda: 3)
    np.testing.assert_array_equal(build(sire, dam).inbreeding.to_numpy(), ref)
    monkeypatch.setattr(pedmod, "_BATCH_BIG", 1)
    monkeypatch.setattr(pedmod, "_BATCH_SMALL", 1)
    np.testing.assert_array_equal(build(sire, dam).inbreeding.to_numpy(), ref)
    # the tabular method over the animals alive adds the same terms in another order
    monkeypatch.undo()
    monkeypatch.setattr(pedmod, "_METHOD", "frontier")
    np.testing.assert_allclose(build(sire, dam).inbreeding.to_numpy(), ref, rtol=0, atol=1e-15)


def test_deep_line_many_waves(monkeypatch):
    # 150 generations of sib mating (one family per wave) next to an unrelated herd
    n_line = 300
    sire, dam = [-1, -1], [-1, -1]
    for k in range(2, n_line, 2):
        sire += [k - 2, k - 2]
        dam += [k - 1, k - 1]
    hs, hd = herd_pedigree(3, n_gen=3, per_gen=60, n_herd=2)
    sire = np.array(sire + [s + n_line if s >= 0 else -1 for s in hs])
    dam = np.array(dam + [d + n_line if d >= 0 else -1 for d in hd])
    ref = meuwissen_luo(sire, dam)
    assert ref[n_line - 1] > 0.99
    monkeypatch.setattr(pedmod, "_METHOD", "families")
    one = build(sire, dam).inbreeding.to_numpy()
    # F near 1 needs more than 53 bits here: both methods round, differently, by an ulp
    np.testing.assert_allclose(one, ref, rtol=0, atol=1e-15)
    monkeypatch.setattr(pedmod, "_THREADS_MIN_PROGENY", 0)
    monkeypatch.setattr(pedmod, "_threads", lambda: 2)
    np.testing.assert_array_equal(build(sire, dam).inbreeding.to_numpy(), one)
    monkeypatch.setattr(pedmod, "_METHOD", "auto")
    np.testing.assert_allclose(build(sire, dam).inbreeding.to_numpy(), ref, rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- deep lines
def tabular_f(sire, dam):
    """F = diag(A) - 1 with A dense by the tabular method (parents first, -1 unknown)."""
    n = len(sire)
    A = np.zeros((n, n))
    for i in range(n):
        s, d = sire[i], dam[i]
        row = np.zeros(i)
        if s >= 0:
            row += 0.5 * A[s, :i]
        if d >= 0:
            row += 0.5 * A[d, :i]
        A[i, :i] = A[:i, i] = row
        A[i, i] = 1.0 + (0.5 * A[s, d] if s >= 0 and d >= 0 else 0.0)
    return np.diag(A) - 1.0


def full_sib_chain(n):
    """Two founders, then pairs of full sibs: each pair the offspring of the previous one."""
    g = np.arange(n) // 2
    return np.where(g > 0, 2 * g - 2, -1), np.where(g > 0, 2 * g - 1, -1)


def deep_lines():
    """Deep inbred lines side by side: full-sib mating, selfing, a closed colony of 8 a
    generation, and a maternal line crossed each generation to a new founder bull listed
    ahead of everything (a founder whose row starts at its only child)."""
    sire, dam = [], []

    def add(s, d):
        base = len(sire)
        sire.extend(x + base if x >= 0 else -1 for x in s)
        dam.extend(x + base if x >= 0 else -1 for x in d)

    n_bull = 40
    add([-1] * n_bull, [-1] * n_bull)                     # the bulls, first
    add(*full_sib_chain(120))
    add([-1] + list(range(29)), [-1] + list(range(29)))   # 29 generations of selfing
    rng = np.random.default_rng(5)
    s, d = [-1] * 8, [-1] * 8
    for lo in range(8, 200, 8):
        s += list(rng.integers(lo - 8, lo - 4, 8))
        d += list(rng.integers(lo - 4, lo, 8))
    add(s, d)
    base = len(sire)                                      # cows: each the dam of the next
    sire.extend(range(n_bull))
    dam.extend([-1] + list(range(base, base + n_bull - 1)))
    return np.array(sire), np.array(dam)


def test_deep_lines_by_the_tabular_method_match_dense_a(monkeypatch):
    sire, dam = deep_lines()
    ref = tabular_f(sire, dam)
    assert ref.max() > 0.999 and np.count_nonzero(ref) > 250
    monkeypatch.setattr(pedmod, "_by_families", None)     # deep and narrow: not by families
    F = build(sire, dam).inbreeding.to_numpy()
    np.testing.assert_allclose(F, ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(F, meuwissen_luo(sire, dam), rtol=0, atol=1e-15)
    # chunks of the computation (between progress reports) continue one another exactly
    monkeypatch.setattr(pedmod, "_FRONTIER_CHUNK", 7)
    np.testing.assert_array_equal(build(sire, dam).inbreeding.to_numpy(), F)


def test_full_sib_recursion_of_wright():
    # F_t = (1 + 2 F_{t-1} + F_{t-2}) / 4 for full-sib mating (Wright 1921)
    F = build(*full_sib_chain(400)).inbreeding.to_numpy()[::2]
    ref = np.zeros(200)
    for t in range(2, 200):
        ref[t] = 0.25 * (1.0 + 2.0 * ref[t - 1] + ref[t - 2])
    np.testing.assert_allclose(F, ref, rtol=0, atol=1e-14)


def test_each_connected_part_gets_its_method(monkeypatch):
    # an ordinary herd (by families) beside deep lines (by the tabular method); the limits
    # are lowered so that this small herd is "wide" and the lines "deep"
    monkeypatch.setattr(pedmod, "_FRONTIER_MAX_WIDTH", 64)
    monkeypatch.setattr(pedmod, "_DEEP_TRACE", 16)
    hs, hd = herd_pedigree(4, n_gen=6, per_gen=120, n_herd=3)
    ls, ld = deep_lines()
    chain_s, chain_d = full_sib_chain(600)
    parts = [(hs, hd), (ls, ld), (chain_s, chain_d)]
    sire, dam, base = [], [], 0
    for s, d in parts:
        sire.append(np.where(s >= 0, s + base, -1))
        dam.append(np.where(d >= 0, d + base, -1))
        base += len(s)
    sire, dam = np.concatenate(sire), np.concatenate(dam)
    calls = []
    for name in ("_by_families", "_by_frontier"):
        real = getattr(pedmod, name)
        monkeypatch.setattr(pedmod, name, lambda s, *a, _f=real, _n=name: (
            calls.append((_n, len(s))), _f(s, *a))[1])
    F = build(sire, dam).inbreeding.to_numpy()
    assert sorted(calls) == [("_by_families", len(hs)), ("_by_frontier", len(ls) + 600)]
    np.testing.assert_allclose(F, meuwissen_luo(sire, dam), rtol=0, atol=1e-15)
    assert F[len(hs):].max() > 0.999 and F[:len(hs)].max() > 0.2


@pytest.mark.slow
def test_long_full_sib_chain_is_linear():
    # 100,000 generations of full-sib mating: the family traces would visit ~5e9 ancestors
    # (minutes); the tabular method over the 4 animals alive takes milliseconds
    sire, dam = full_sib_chain(200_000)
    t0 = time.perf_counter()
    F = pedmod.inbreeding_coefficients(sire, dam, np.arange(200_000) // 2)
    assert time.perf_counter() - t0 < 30.0
    assert F[-1] == pytest.approx(1.0, abs=1e-15) and np.all(np.diff(F[::2]) >= 0)


def test_progress_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(pedmod, "_PROGRESS_MIN", 100)
    monkeypatch.setattr(pedmod, "_PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(pedmod, "_FRONTIER_CHUNK", 2000)       # 500 animals x 4 slots
    sire, dam = full_sib_chain(1000)
    with caplog.at_level(logging.INFO, logger="mvreml"):
        build(sire, dam).inbreeding
    text = [r.getMessage() for r in caplog.records if r.name == "mvreml"]
    assert text[0] == "inbreeding of 1000 animals by the tabular method over the animals " \
        "alive (4 at most)"
    assert text[1].startswith("inbreeding: 50% (500 of 1000 animals) after")
    assert text[2].startswith("inbreeding: 100% (1000 of 1000 animals) after")
    assert text[-1].startswith("inbreeding done in")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mvreml"):
        build(*herd_pedigree(1)).inbreeding
    text = [r.getMessage() for r in caplog.records if r.name == "mvreml"]
    assert text[0].startswith("inbreeding of 1680 animals by families of")
    assert any(t.startswith("inbreeding: 100% (") for t in text)
    monkeypatch.setattr(pedmod, "_PROGRESS_MIN", 2000)             # small pedigrees: silent
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mvreml"):
        build(sire, dam).inbreeding
    assert not [r for r in caplog.records if r.name == "mvreml"]
