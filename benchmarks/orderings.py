"""CHOLMOD's fill-reducing orderings on the benchmark problems' mixed-model equations.

    python -m benchmarks.orderings --sizes M --traits U B T [--orderings default amd metis nesdis]
                                   [--outdir DIR] [--evaluations 6]
                                   [--relax 4,16,48/0.8,0.1,0.05 16,48,96/0.8,0.2,0.05 ...]

For each problem the C of the first evaluation of a fit (the model of benchmarks.run) is captured
once; then, per ordering ("camd": minimum degree with the fixed effects last), this process times the symbolic analysis, one numeric
factorization and one in-place selected inverse (mvreml.chol) in CPU seconds on one BLAS thread, and reports nnz(L), CHOLMOD's flop
count and the cost of a fit's factor work (analysis + ``--evaluations`` x (factorize + selected
inverse)), which is what the choice of ordering changes. ``--relax`` repeats each ordering
under CHOLMOD's relaxed amalgamations ``nrelax/zrelax`` (3 column limits / 3 fractions of zeros;
CHOLMOD's defaults when not given). Prints one JSON record per line.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings


from . import problems
from .run import MODELS, timed_relationship


def capture_c(size: str, traits: str, outdir: str):
    """(C, rows, cols) of the problem's mixed-model equations at the starting values."""
    import mvreml
    from mvreml import likelihood

    captured = {}
    original = likelihood.REMLModel._factorize

    def grab(self, C):
        captured.setdefault("C", C.copy())
        captured.setdefault("pairs", (self.pattern.rows, self.pattern.cols))
        captured.setdefault("p", self.p)
        raise KeyboardInterrupt          # stop the fit: only C is wanted

    spec = MODELS[traits]
    ped, data = problems.read(size, outdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rel = timed_relationship(ped, {})
        likelihood.REMLModel._factorize = grab
        try:
            mvreml.fit(spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                       relmat={"ped": rel}, maxiter=1)
        except KeyboardInterrupt:
            pass
        finally:
            likelihood.REMLModel._factorize = original
    return captured["C"], captured["pairs"], captured["p"]


def parse_relax(text: str) -> tuple:
    """"4,16,48/0.8,0.1,0.05" -> ((4, 16, 48), (0.8, 0.1, 0.05))."""
    n, z = text.split("/")
    return tuple(int(v) for v in n.split(",")), tuple(float(v) for v in z.split(","))


def time_ordering(C, pairs, p: int, ordering: str, evaluations: int, relax=None) -> dict:
    """Seconds of CPU (one BLAS thread: the figures of a shared machine that mean something; wall
    seconds beside them) of the analysis, one factorization and one selected inverse."""
    from mvreml._threads import blas_threads
    from mvreml.chol import SupernodalFactor, SupernodalInverse

    clock = time.process_time
    with blas_threads(1):
        w0, t0 = time.perf_counter(), clock()
        nrelax, zrelax = relax if relax else (None, None)
        f = SupernodalFactor(C, ordering=ordering, last=p, nrelax=nrelax, zrelax=zrelax)
        t1 = clock()
        f.factorize(C)
        t2 = clock()
        logdet = f.logdet()
        si = SupernodalInverse(f, *pairs)
        t3 = clock()
        si.compute(f)
        t4, w4 = clock(), time.perf_counter()
    info = f.analysis()
    fact, selinv = t2 - t1, t4 - t3
    return {"ordering": ordering, "n": C.shape[0], "symbolic": t1 - t0, "factorize": fact, "positions": t3 - t2,
            "selinv": selinv, "wall": w4 - w0, "lnz": info["lnz"], "xsize": info["xsize"], "nsuper": info["nsuper"],
            "gflop": info["flops"] / 1e9, "logdet": logdet, "nrelax": info["nrelax"], "zrelax": info["zrelax"],
            "fit_factor_work": (t1 - t0) + evaluations * (fact + selinv)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["M"], choices=problems.SIZES)
    ap.add_argument("--traits", nargs="+", default=["U", "B", "T"], choices=list(MODELS))
    ap.add_argument("--orderings", nargs="+", default=["default", "amd", "camd", "metis", "nesdis"])
    ap.add_argument("--outdir", default=str(problems.DEFAULT_DIR))
    ap.add_argument("--evaluations", type=int, default=6)
    ap.add_argument("--relax", nargs="+", type=parse_relax, default=[None], metavar="N,N,N/Z,Z,Z")
    a = ap.parse_args(argv)
    for size in a.sizes:
        for traits in a.traits:
            C, pairs, p = capture_c(size, traits, a.outdir)
            for ordering in a.orderings:
                for relax in a.relax:
                    rec = time_ordering(C, pairs, p, ordering, a.evaluations, relax)
                    rec.update(problem=f"{traits}-{size}", nnz_c=int(C.nnz))
                    print(json.dumps(rec), flush=True)
            del C, pairs  # one problem's equations in memory at a time


if __name__ == "__main__":
    main()
