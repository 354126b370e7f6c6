"""Inbreeding kernel: bit-for-bit equal to Meuwissen & Luo, one thread or several."""
import heapq
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml.pedigree as pedmod
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
    one = build(sire, dam).inbreeding.to_numpy()
    # F near 1 needs more than 53 bits here: both methods round, differently, by an ulp
    np.testing.assert_allclose(one, ref, rtol=0, atol=1e-15)
    monkeypatch.setattr(pedmod, "_THREADS_MIN_PROGENY", 0)
    monkeypatch.setattr(pedmod, "_threads", lambda: 2)
    np.testing.assert_array_equal(build(sire, dam).inbreeding.to_numpy(), one)
