"""Multi-environment trial (MET) benchmark problems: sites x genotypes x reps with a pedigree.

Deterministic simulation (numpy ``default_rng(seed)``) of the model

    yield ~ site,  random ~ fa(site, 3):vm(gen, ped),  residual ~ dsum(~ units | site)

- pedigree: ``n_gen // 40`` (at least 8) founders, not observed; then 4 breeding cycles of
  ``n_gen / 4`` genotypes each, in full-sib families of 10 (a plant-breeding pattern: each
  cross gives several sibling lines), the two parents of a cross drawn at random from the
  founders and all genotypes of earlier cycles (one parent labelled sire, one dam; a genotype
  may be used as both, so the pedigree is read with ``allow_sire_dam=True``);
- genetic values u (animals x sites) ~ N(0, A (x) G) with G = L L' + diag(psi): L (sites x 3)
  lower trapezoidal (L[i, m] = 0 for i < m, as asreml constrains it), loadings
  U(0.3, 1.0) on the first factor, U(-0.5, 0.5) on the others; psi ~ U(0.15, 0.5);
  simulated by the Mendelian-sampling recursion u_i = (u_s + u_d) / 2 + sqrt(d_i) m_i G^{1/2},
  d_i = 1/2 - (F_s + F_d) / 4 from mvreml's inbreeding (exact, not an approximation);
- site means 5 + U(-2, 2) (fixed ``site``), residual variances per site U(0.5, 2.0);
- every genotype in every site, ``n_rep = 2`` plots each (balanced).

Sizes: S = 10 sites x 200 genotypes (4,000 plots), M = 50 x 2,000 (200,000 plots, issue 11).
Problems are cached in ``benchmarks/problems/MET-<size>/{pedigree.csv, data.csv, truth.json}``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .problems import DEFAULT_DIR

SIZES = {"S": (10, 200), "M": (50, 2000)}
K = 3
N_REP = 2
FAMILY = 10
CYCLES = 4
MODEL = dict(fixed="yield ~ site", random=f"~ fa(site, {K}):vm(gen, ped)",
             residual="~ dsum(~ units | site)", term=f"fa(site, {K}):vm(gen, ped)")


def _pedigree(n_gen: int, rng) -> pd.DataFrame:
    n_found = max(8, n_gen // 40)
    ids = [f"F{i:04d}" for i in range(n_found)]
    rows = [(a, "0", "0") for a in ids]
    per_cycle = n_gen // CYCLES
    g = 0
    for c in range(CYCLES):
        pool = list(ids)                       # founders and all earlier cycles
        n_this = per_cycle if c < CYCLES - 1 else n_gen - g
        while n_this > 0:
            s, d = rng.choice(len(pool), 2, replace=False)
            for _ in range(min(FAMILY, n_this)):
                name = f"G{g:05d}"
                rows.append((name, pool[s], pool[d]))
                ids.append(name)
                g += 1
                n_this -= 1
    return pd.DataFrame(rows, columns=["animal", "sire", "dam"])


def _truth(n_site: int, rng):
    L = np.empty((n_site, K))
    L[:, 0] = rng.uniform(0.3, 1.0, n_site)
    L[:, 1:] = rng.uniform(-0.5, 0.5, (n_site, K - 1))
    for m in range(K):
        L[:m, m] = 0.0
    psi = rng.uniform(0.15, 0.5, n_site)
    resid = rng.uniform(0.5, 2.0, n_site)
    means = 5 + rng.uniform(-2, 2, n_site)
    return L, psi, resid, means


def simulate(size: str, seed: int = 1):
    """(pedigree, data, truth) of MET problem `size` (see the module docstring)."""
    import warnings

    import mvreml

    n_site, n_gen = SIZES[size]
    rng = np.random.default_rng(seed)
    ped = _pedigree(n_gen, rng)
    L, psi, resid, means = _truth(n_site, rng)
    G = L @ L.T + np.diag(psi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F = mvreml.Pedigree(ped, allow_sire_dam=True).inbreeding      # by label
    F = F.reindex(ped["animal"].astype(str)).to_numpy(dtype=float)
    index = {a: i for i, a in enumerate(ped["animal"])}
    Gh = np.linalg.cholesky(G)
    u = np.zeros((len(ped), n_site))
    for i, (a, s, d) in enumerate(ped.itertuples(index=False)):
        fs = F[index[s]] if s != "0" else -1.0       # unknown parent: F = -1 in the usual d_i formula
        fd = F[index[d]] if d != "0" else -1.0
        dvar = 0.5 - 0.25 * (fs + fd)               # 1 for founders, 1/2 - (F_s + F_d)/4 otherwise
        mid = 0.5 * ((u[index[s]] if s != "0" else 0.0) + (u[index[d]] if d != "0" else 0.0))
        u[i] = mid + np.sqrt(dvar) * (Gh @ rng.standard_normal(n_site))
    gens = ped["animal"].to_numpy()[-n_gen:]
    ug = u[-n_gen:]
    site = np.repeat(np.arange(n_site), n_gen * N_REP)
    gen = np.tile(np.repeat(np.arange(n_gen), N_REP), n_site)
    rep = np.tile(np.arange(N_REP), n_site * n_gen)
    y = means[site] + ug[gen, site] + rng.standard_normal(site.size) * np.sqrt(resid[site])
    data = pd.DataFrame({"site": [f"S{s + 1:02d}" for s in site], "gen": gens[gen],
                         "rep": [f"R{r + 1}" for r in rep], "yield": y})
    truth = {"seed": seed, "size": size, "n_site": n_site, "n_gen": n_gen, "n_animals": len(ped),
             "k": K, "loadings": L.tolist(), "psi": psi.tolist(), "residual": resid.tolist(),
             "means": means.tolist(), "G": G.tolist()}
    return ped, data, truth


def ensure(size: str, outdir: Path | str = DEFAULT_DIR, seed: int = 1) -> Path:
    """Directory of MET problem `size`, generated first when not cached (or another seed)."""
    if size not in SIZES:
        raise ValueError(f"unknown MET size {size!r} (sizes: {', '.join(SIZES)})")
    d = Path(outdir) / f"MET-{size}"
    try:
        if json.loads((d / "truth.json").read_text()).get("seed") == seed and (d / "data.csv").is_file():
            return d
    except (OSError, ValueError):
        pass
    ped, data, truth = simulate(size, seed)
    d.mkdir(parents=True, exist_ok=True)
    ped.to_csv(d / "pedigree.csv", index=False)
    data.to_csv(d / "data.csv", index=False)
    (d / "truth.json").write_text(json.dumps(truth, indent=1))
    return d


def read(size: str, outdir: Path | str = DEFAULT_DIR, seed: int = 1):
    """(pedigree, data, truth) of a cached MET problem; site, gen, rep categorical."""
    d = ensure(size, outdir, seed)
    ped = pd.read_csv(d / "pedigree.csv", dtype=str)
    data = pd.read_csv(d / "data.csv", dtype={"site": str, "gen": str, "rep": str})
    for col in ("site", "gen", "rep"):
        data[col] = data[col].astype("category")
    return ped, data, json.loads((d / "truth.json").read_text())
