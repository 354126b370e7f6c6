"""MUMPS's selected inverse (ICNTL(30)) alone, against CHOLMOD's, on one problem.

    python -m benchmarks.mumps_selinv --key U-S [--icntl27 -32 64 256] [--orient engine first] [--repeat 2]

One process (MUMPS on one rank): the model's C at its starting values, one factorization,
then ``selected_inverse()`` on the pattern of C timed per setting: ``--orient engine``
requests each pair as the engine gives it (row >= column in the original order),
``first`` with its column the equation MUMPS eliminates first (mvreml.backends.mumps
orients so by default); ``--icntl27`` the block of right-hand sides. Every value is held
against CHOLMOD's (the largest relative difference is printed). One JSON record per setting.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import numpy as np

from . import machine
from mvreml.backends.mumps import SELINV_RHS_BLOCK

from .mumps import _design


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", default="U-S")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--icntl27", nargs="+", type=int, default=[SELINV_RHS_BLOCK])
    ap.add_argument("--orient", nargs="+", default=["first"], choices=["engine", "first"])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    from mvreml.backends import Assembly
    from mvreml.backends.cholmod import CholmodBackend
    from mvreml.backends.mumps import MumpsBackend
    from mvreml.backends.mpi import world
    from mvreml.start import starting_values

    from mvreml.api import prepare
    from mvreml.formula import parse_fixed, parse_random, parse_residual
    from mvreml.likelihood import REMLModel

    spec, data, rel = _design(args.key, args.outdir)
    fs = parse_fixed(spec["fixed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design, Y, P, blocks = prepare(fs, parse_random(spec["random"], fs.response),
                                       parse_residual(spec["residual"], fs.response), data, relmat={"ped": rel})
        theta, _ = starting_values(design, blocks, None, P, Y)
    model = REMLModel(design, blocks)
    pat = model.pattern
    mats = model.matrices(theta)
    nr = model.n_random
    ginv = [np.linalg.inv(G) for G in mats[:nr]]
    rstack, _ = model._residual_parts(mats[nr:])
    rinv = model._pair_values(rstack)
    C = pat.assemble(rinv, ginv)

    ref = CholmodBackend()
    ref.analyze(C)
    ref.set_pattern(pat.rows, pat.cols)
    ref.factorize(C)
    t = time.perf_counter()
    want = ref.selected_inverse()
    t_cholmod = time.perf_counter() - t

    b = MumpsBackend(world())
    b.analyze_model(model)
    b.factorize_assembly(Assembly(rinv, rstack, ginv))
    for orient in args.orient:
        for k27 in args.icntl27:
            b.core.rhs_block = k27
            b.set_pattern(pat.rows, pat.cols, orient=orient == "first")
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                got = b.selected_inverse()
                times.append(time.perf_counter() - t)
            err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
            print(json.dumps(dict(key=args.key, n_eq=int(pat.n_eq), nnz=int(pat.nnz), orient=orient, icntl27=k27,
                                  seconds=times, cholmod_seconds=t_cholmod, max_diff_over_max=err,
                                  peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                                  load=machine.machine().get("load1"))), flush=True)
    b.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
