"""The fast paths of Pedigree (issue 16): generations in one pass when the table lists parents
first, no duplicate search when no animal is listed twice, labels of integer IDs made in one
pass, the inbreeding kernel's unrolled rows: the same pedigree, F and A^-1 as the general paths."""
import warnings

import numpy as np
import pandas as pd
import pytest

from mvreml._core import ainv as kern
from mvreml.pedigree import Pedigree


def _random_pedigree(rng, n, per_gen=40):
    sire, dam = np.full(n, -1), np.full(n, -1)
    for lo in range(per_gen, n, per_gen):
        hi = min(lo + per_gen, n)
        sire[lo:hi] = rng.integers(max(0, lo - 3 * per_gen), lo, hi - lo)
        dam[lo:hi] = rng.integers(max(0, lo - 3 * per_gen), lo, hi - lo)
    sire[rng.random(n) < 0.1] = -1
    dam[rng.random(n) < 0.1] = -1
    return sire, dam


def _kahn(sire, dam):
    n = sire.size
    gen = np.empty(n, np.int64)
    kern.generations(sire, dam, np.empty(n + 1, np.int64), np.empty(2 * n, np.int64),
                     np.empty(n, np.int64), np.empty(n, np.int64), gen)
    return gen


@pytest.mark.parametrize("seed", range(5))
def test_generations_in_one_pass_are_kahns(seed):
    rng = np.random.default_rng(seed)
    sire, dam = _random_pedigree(rng, 500)
    gen = np.empty(500, np.int64)
    assert kern.generations_in_order(sire, dam, np.arange(500), gen)
    np.testing.assert_array_equal(gen, _kahn(sire, dam))
    # an order with some offspring before a parent is refused (then the pedigree is sorted)
    order = np.arange(500)[::-1].copy()
    assert not kern.generations_in_order(sire, dam, order, gen)


def _table(sire, dam, labels):
    lab = np.append(labels, 0)
    return pd.DataFrame({"animal": labels, "sire": lab[sire], "dam": lab[dam]})


def test_a_shuffled_table_gives_the_same_pedigree_f_and_ainv():
    rng = np.random.default_rng(3)
    n = 800
    sire, dam = _random_pedigree(rng, n)
    labels = rng.permutation(np.arange(10_000, 10_000 + n))   # integer IDs, not in order
    tab = _table(sire, dam, labels)
    shuffled = tab.iloc[rng.permutation(n)].reset_index(drop=True)
    twice = pd.concat([tab, tab.iloc[:50]], ignore_index=True)   # repeated rows: the duplicate path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # sires are also dams here
        a, b, c = (Pedigree(t, allow_sire_dam=True) for t in (tab, shuffled, twice))
    assert list(a.ids) == [str(x) for x in labels]              # parents-first table: its order kept
    for other in (b, c):
        pos = other.index_of(a.ids)
        np.testing.assert_allclose(other.inbreeding.to_numpy()[pos], a.inbreeding.to_numpy(), rtol=0, atol=0)
        A1, A2 = a.ainv().toarray(), other.ainv().toarray()[np.ix_(pos, pos)]
        np.testing.assert_allclose(A1, A2, rtol=1e-14, atol=1e-14)   # summed in another order
    assert c.n_duplicates == 50


def test_conflicting_duplicates_are_still_found():
    tab = pd.DataFrame({"animal": [1, 2, 3, 3], "sire": [0, 0, 1, 2], "dam": [0, 0, 2, 1]})
    with pytest.raises(Exception, match="more than once with different parents"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Pedigree(tab, allow_sire_dam=True)


def test_integer_labels_are_the_decimal_strings():
    big = np.array([1, 2, 9_007_199_254_740_993, 2**62, 7], np.int64)   # beyond float precision
    tab = pd.DataFrame({"animal": big, "sire": [0, 0, 1, 2, 0], "dam": [0, 0, 2, 1, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ped = Pedigree(tab, allow_sire_dam=True)
    assert sorted(ped.ids) == sorted(big.astype(str).tolist())
    assert all(type(x) is str for x in ped.ids)
