"""Inbreeding coefficients of a sorted pedigree (parents numbered before offspring).

Two exact methods, chosen per connected part of the pedigree by their cost, which is
estimated in O(n) before any work is done:

- **families of a key parent** (Colleau 2002; Sargolzaei, Iwaisaki & Colleau 2005;
  ``_core.ainv.inbreeding_batches``): one trace of the ancestors of each key (an AI sire,
  say) serves all its progeny.  Fast on ordinary pedigrees, but like every method built on
  rows of L (Meuwissen & Luo 1992 included) its cost is the number of (animal, ancestor)
  pairs traced, which grows with the square of the depth: in an inbred line bred for
  thousands of generations every animal has thousands of ancestors.
- **tabular method over the animals alive** (Emik & Terrill 1949; Henderson 1976;
  ``_core.frontier.frontier_inbreeding``): a(j, k) is kept only for the animals that still have
  progeny to come, so its cost is O(n w) for w such animals at once, whatever the depth.
  Chosen when n w is below the estimated trace cost (deep, narrow lines: sib mating,
  selfing, small closed colonies) and w is at most ``_FRONTIER_MAX_WIDTH``.

Both give F to rounding (they add the same terms in a different order).  Long computations
report progress on the "mvreml" logger at INFO.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from mvreml._core import ainv as _kern
from mvreml._core import frontier as _deep

log = logging.getLogger("mvreml")

_THREADS_MIN_PROGENY = 200_000   # fewer animals with both parents known: one thread is enough
_MAX_THREADS = 4
_BIG_FAMILY = 8                  # progeny; families this large are batched apart from the rest
_BATCH_BIG, _BATCH_SMALL = 16, 8  # families per batch (a trace serves them all)
_FRONTIER_MAX_WIDTH = 4096       # animals alive at once: a matrix of 128 MiB at most
_DEEP_TRACE = 256                # estimated ancestors traced per animal and generations
_DEEP_GENERATIONS = 64           # above which the connected parts are considered one by one
                                 # (shallower parts cost the family traces little)
_FRONTIER_CHUNK = 1 << 26        # slots written between progress reports (~0.1 s)
_METHOD = "auto"                 # "auto", "families" or "frontier" (tests force one)
_PROGRESS_MIN = 100_000          # animals; smaller pedigrees are not logged
_PROGRESS_EVERY = 5.0            # seconds between progress lines


class _Progress:
    """INFO lines "inbreeding: 40% (...)" at most every ``_PROGRESS_EVERY`` seconds, for
    pedigrees of ``_PROGRESS_MIN`` animals or more."""

    def __init__(self, n: int, total: int, unit: str, method: str):
        self.on = n >= _PROGRESS_MIN and log.isEnabledFor(logging.INFO)
        self.total, self.unit = max(int(total), 1), unit
        self.t0 = self.last = time.perf_counter()
        if self.on:
            log.info("inbreeding of %d animals %s", n, method)

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.on and now - self.last >= _PROGRESS_EVERY:
            self.last = now
            log.info("inbreeding: %.0f%% (%d of %d %s) after %.1f s", 100.0 * done / self.total,
                     done, self.total, self.unit, now - self.t0)

    def close(self) -> None:
        if self.on:
            log.info("inbreeding done in %.3g s", time.perf_counter() - self.t0)


def _threads() -> int:
    """Threads for F: the CPUs this process may use, at most OMP_NUM_THREADS if set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                              # not Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return max(1, min(cores, _MAX_THREADS))


def _keys(sire, dam):
    """Animals with both parents known, and the key parent of each: the parent with more
    such progeny (an AI sire rather than a natural-service sire)."""
    n = sire.size
    both = np.flatnonzero((sire >= 0) & (dam >= 0))
    s, d = sire[both], dam[both]
    size = np.bincount(s, minlength=n) + np.bincount(d, minlength=n)
    return both, np.where(size[s] >= size[d], s, d)


def _family_batches(sire, dam, gen, keys=None):
    """Families of the inbreeding kernel (see ``_core.ainv.inbreeding_batches``).

    An animal with both parents known joins the family of its key parent (``_keys``), so
    one ancestor trace serves the family and full sibs cost one lookup; animals with an
    unknown parent have F = 0.  Families are ordered by generation of the key (the waves),
    large ones first, then by the key's sire so that a batch of consecutive families holds
    paternal half sibs, whose ancestors coincide.  Returns fam_key, fam_ptr, batch_ptr,
    prog, mate, waves (batch indices where a wave starts, and the end).
    """
    n = sire.size
    both, key = _keys(sire, dam) if keys is None else keys
    fam_size = np.bincount(key, minlength=n)
    fam_key = np.flatnonzero(fam_size)
    small = fam_size[fam_key] < _BIG_FAMILY
    first = np.lexsort((fam_key, sire[fam_key], small, gen[fam_key]))
    fam_key, small = fam_key[first], small[first]
    rank = np.empty(n, np.int64)
    rank[fam_key] = np.arange(fam_key.size)
    order = np.argsort(rank[key])                       # progeny grouped by family
    prog = both[order]
    mate = np.where(sire[prog] == key[order], dam[prog], sire[prog]).astype(np.int32)
    fam_ptr = np.zeros(fam_key.size + 1, np.int64)
    np.cumsum(fam_size[fam_key], out=fam_ptr[1:])
    # batches: runs of _BATCH_* families within each (generation, size class) group
    group = 2 * gen[fam_key] + small
    pos = np.arange(fam_key.size)
    start = np.maximum.accumulate(np.where(np.diff(group, prepend=-1) != 0, pos, 0))
    cut = (pos - start) % np.where(small, _BATCH_SMALL, _BATCH_BIG) == 0
    batch_ptr = np.append(np.flatnonzero(cut), fam_key.size).astype(np.int64)
    batch_gen = gen[fam_key[batch_ptr[:-1]]]
    waves = np.flatnonzero(np.diff(batch_gen, prepend=-1, append=batch_gen[-1] + 1))
    return (fam_key.astype(np.int32), fam_ptr, batch_ptr, prog.astype(np.int32), mate, waves)


def _by_families(sire: np.ndarray, dam: np.ndarray, gen: np.ndarray, keys=None) -> np.ndarray:
    """F by families of a key parent.

    Batches of families run in waves of increasing generation of the keys (a family needs
    the F of its ancestors' parents only); the batches of a wave are shared among threads.
    The result is the same for any number of threads. ``keys``: ``_keys(sire, dam)`` when
    the caller has it already.
    """
    n = sire.size
    F = np.zeros(n)
    if not np.any((sire >= 0) & (dam >= 0)):
        return F
    fam_key, fam_ptr, batch_ptr, prog, mate, waves = _family_batches(sire, dam, gen, keys)
    n_threads = _threads() if prog.size >= _THREADS_MIN_PROGENY else 1
    progress = _Progress(n, prog.size, "animals with both parents known",
                         f"by families of {fam_key.size} key parents, in {waves.size - 1} "
                         "generations of keys")
    if n_threads == 1 and not progress.on:
        waves = waves[[0, -1]]
    work = [np.empty(n * _kern.NODE_BYTES, np.uint8) for _ in range(n_threads)]
    _kern.inbreeding_setup(sire, dam, gen, work[0])
    for w in work[1:]:
        w[:] = work[0]
    # rows of batch values; only the rows a batch reaches are ever touched (paged in)
    slab = [np.empty(max(_BATCH_BIG, _BATCH_SMALL) * (n + 1)) for _ in range(n_threads)]
    scratch = [np.empty(4 * (n + 1), np.int32) for _ in range(n_threads)]
    bucket = [np.full(int(gen.max()) + 1, -1, np.int32) for _ in range(n_threads)]
    counter = np.zeros(1, np.int64)

    def run(t: int, first: int, last: int) -> None:
        _kern.inbreeding_batches(work[t], slab[t], scratch[t], bucket[t], fam_key, fam_ptr,
                                 batch_ptr, prog, mate, first, last, counter, F)

    with ThreadPoolExecutor(n_threads - 1) if n_threads > 1 else nullcontext() as pool:
        for first, last in zip(waves[:-1], waves[1:]):  # generations, not animals
            counter[0] = first
            helpers = [pool.submit(run, t, first, last) for t in range(1, n_threads)]
            run(0, first, last)
            for h in helpers:
                h.result()
            progress.update(int(fam_ptr[batch_ptr[last]]))
    progress.close()
    return F


def _plan(sire, dam, comp, n_comp):
    """(last child of each animal, width and cost of each part) for the frontier method."""
    n = sire.size
    first, last = np.empty(n, np.int64), np.empty(n, np.int64)
    width, cost = np.empty(n_comp, np.int64), np.empty(n_comp)
    _deep.frontier_plan(sire, dam, comp, first, last, width, cost)
    return last, width, cost


def _by_frontier(sire: np.ndarray, dam: np.ndarray, last: np.ndarray, width: int) -> np.ndarray:
    """F by the tabular method over the animals alive (``width`` of them at most)."""
    n = sire.size
    F = np.zeros(n)
    if width == 0:                                      # nobody has progeny
        return F
    rel = np.zeros(width * width)
    slot = np.full(n, -1, np.int32)
    free = np.empty(width, np.int32)
    state = np.zeros(2, np.int64)
    progress = _Progress(n, n, "animals", f"by the tabular method over the animals alive "
                         f"({width} at most)")
    step = max(1, _FRONTIER_CHUNK // width)
    for start in range(0, n, step):
        stop = min(n, start + step)
        _deep.frontier_inbreeding(sire, dam, last, start, stop, rel, slot, free, state, F)
        progress.update(stop)
    progress.close()
    return F


def _subset(idx, sire, dam):
    """Sire and dam of the animals ``idx`` (whole connected parts), renumbered 0.. in
    that order."""
    rank = np.full(sire.size, -1, np.int64)
    rank[idx] = np.arange(idx.size)
    s, d = sire[idx], dam[idx]
    return np.where(s >= 0, rank[s], -1), np.where(d >= 0, rank[d], -1)


def inbreeding_coefficients(sire: np.ndarray, dam: np.ndarray, gen: np.ndarray) -> np.ndarray:
    """F of every animal (parents numbered first, ``gen`` their generation numbers).

    The method is chosen for the whole pedigree when one suits it all, else for each
    connected part (a deep inbred line beside an ordinary herd); see the module notes.
    """
    n = sire.size
    both, key = _keys(sire, dam)
    if both.size == 0:
        return np.zeros(n)
    if _METHOD == "families":
        return _by_families(sire, dam, gen)
    one = np.zeros(n, np.int64)
    last, width, cost = _plan(sire, dam, one, 1)
    if _METHOD == "frontier":
        return _by_frontier(sire, dam, last, int(width[0]))
    # cost of the family traces: at most (bound) the ancestors of each key and of each
    # mate (less, as mates' traces stop at the key's ancestors and full sibs share one);
    # the frontier costs `cost` slots written, known exactly
    older = np.zeros(int(gen.max()) + 2)
    np.cumsum(np.bincount(gen), out=older[1:])
    bound = np.empty(n)
    _deep.ancestor_bound(sire, dam, gen, older, bound)
    keys = np.flatnonzero(np.bincount(key, minlength=n))
    mate = np.where(sire[both] == key, dam[both], sire[both])
    trace = float(bound[keys].sum() + bound[mate].sum())
    if width[0] <= _FRONTIER_MAX_WIDTH and cost[0] <= trace:
        return _by_frontier(sire, dam, last, int(width[0]))
    if trace <= _DEEP_TRACE * n or gen.max() < _DEEP_GENERATIONS:
        return _by_families(sire, dam, gen, (both, key))
    # deep somewhere: choose per connected part
    n_comp, comp = connected_components(_parent_graph(sire, dam), directed=False)
    order = np.argsort(comp, kind="stable")            # parts one after the other
    s2, d2 = _subset(order, sire, dam)
    _, width2, cost2 = _plan(s2, d2, comp[order].astype(np.int64), n_comp)
    trace2 = np.bincount(comp[keys], weights=bound[keys], minlength=n_comp) + \
        np.bincount(comp[both], weights=bound[mate], minlength=n_comp)
    tabular = (width2 <= _FRONTIER_MAX_WIDTH) & (cost2 <= trace2)
    F = np.zeros(n)
    if not tabular.any():
        return _by_families(sire, dam, gen)
    pick = tabular[comp[order]]
    sel = order[pick]                                   # parts for the tabular method
    s3, d3 = _subset(sel, sire, dam)
    last3, width3, _ = _plan(s3, d3, comp[sel].astype(np.int64), n_comp)
    F[sel] = _by_frontier(s3, d3, last3, int(width3.max()))
    rest = np.flatnonzero(~tabular[comp])               # the other parts, in pedigree order
    if rest.size:
        s4, d4 = _subset(rest, sire, dam)
        F[rest] = _by_families(s4, d4, gen[rest])
    return F


def _parent_graph(sire, dam):
    """Undirected animal-parent graph (CSR) for the connected parts."""
    n = sire.size
    child = np.r_[np.flatnonzero(sire >= 0), np.flatnonzero(dam >= 0)]
    parent = np.r_[sire[sire >= 0], dam[dam >= 0]]
    return coo_array((np.ones(child.size, np.int8), (child, parent)), shape=(n, n)).tocsr()
