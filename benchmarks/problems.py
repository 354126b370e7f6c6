"""Benchmark problems: the deterministic pedigree trials of ``shared/bench/make_problems.py``.

The generator is the shared script itself (one source of truth for the simulated model),
found beside the repository at ``../shared/bench/make_problems.py`` or named by the
environment variable ``MVREML_MAKE_PROBLEMS``; its ``write(outdir, size, seed)`` makes
``OUTDIR/<size>/{pedigree.csv, data.csv, truth.json}``. Problems are cached under
``benchmarks/problems/`` (git-ignored) and regenerated only when absent or made with
another seed.

    python -m benchmarks.problems [--sizes S M L] [--outdir DIR] [--seed 1]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DIR = HERE / "problems"
SIZES = ("S", "M", "L")


def generator_path() -> Path:
    """Where the shared generator script is (``MVREML_MAKE_PROBLEMS`` overrides)."""
    env = os.environ.get("MVREML_MAKE_PROBLEMS")
    return Path(env) if env else REPO.parent / "shared" / "bench" / "make_problems.py"


def _generator():
    path = generator_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the benchmark generator {path} is missing: the problems are defined by the shared "
            "script make_problems.py (put it at ../shared/bench/ beside the repository or set "
            "MVREML_MAKE_PROBLEMS to its path)")
    spec = importlib.util.spec_from_file_location("_mvreml_make_problems", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cached(d: Path, seed: int) -> bool:
    if not all((d / f).is_file() for f in ("pedigree.csv", "data.csv", "truth.json")):
        return False
    try:
        return json.loads((d / "truth.json").read_text()).get("seed") == seed
    except (OSError, ValueError):
        return False


def ensure(size: str, outdir: Path | str = DEFAULT_DIR, seed: int = 1) -> Path:
    """Directory of problem `size`, generated first if it is not cached.

    Parameters
    ----------
    size : {"S", "M", "L"}
    outdir : path
        Cache directory (default ``benchmarks/problems``).
    seed : int
        Simulation seed (the shared script's default is 1).

    Returns
    -------
    pathlib.Path
        ``outdir/size``, holding pedigree.csv, data.csv and truth.json.
    """
    if size not in SIZES:
        raise ValueError(f"unknown problem size {size!r} (sizes: {', '.join(SIZES)})")
    d = Path(outdir) / size
    if not _cached(d, seed):
        _generator().write(str(outdir), size, seed)
    return d


def read(size: str, outdir: Path | str = DEFAULT_DIR, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pedigree, data) of problem `size`, with sex and cg categorical.

    The CSVs store the contemporary group and sex as labels (``CG12``, ``M``); they are
    converted to pandas categoricals so no formula can take them for covariates.
    """
    d = ensure(size, outdir, seed)
    ped = pd.read_csv(d / "pedigree.csv")
    data = pd.read_csv(d / "data.csv")
    for col in ("sex", "cg"):
        data[col] = data[col].astype(str).astype("category")
    return ped, data


def truth(size: str, outdir: Path | str = DEFAULT_DIR) -> dict:
    """The simulated G0, R0 and counts of a generated problem."""
    return json.loads((Path(outdir) / size / "truth.json").read_text())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["S", "M"], choices=SIZES)
    ap.add_argument("--outdir", default=str(DEFAULT_DIR))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    for s in a.sizes:
        print(ensure(s, a.outdir, a.seed))


if __name__ == "__main__":
    main()
