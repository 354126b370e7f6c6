"""``mvreml.plan``: what a fit will need, before it runs (design and symbolic analysis only).

>>> p = mvreml.plan("cbind(y1, y2) ~ trait + at(trait):sex", random="~ us(trait):vm(animal, ped)",
...                 residual="~ units:us(trait)", data=df, relmat={"ped": ped})
>>> p                      # equations, nnz(C), nnz(L), flops, memory and seconds per iterate
>>> p.peak_bytes, p.available_bytes, p.seconds_per_iterate

The forecast is that of ``mvreml._forecast`` (what it counts is said there and in
:class:`mvreml.Plan`); ``fit`` makes the same forecast before its first numeric
factorization and refuses with a ResourceError when it does not fit in memory.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from . import _forecast, _threads
from ._timing import Timer
from ._validate import fit_options
from .formula import parse_fixed, parse_random, parse_residual
from .likelihood import REMLModel

__all__ = ["plan"]


def plan(fixed: str, random: str | None = None, residual: str | None = None, *, data: pd.DataFrame,
         relmat: Mapping | None = None, init=None, fix: Sequence[str] | None = None,
         weights: str | None = None, maxiter: int = 50, verbose: bool = False,
         ordering: str = "default", tol: float = 1e-7, missing_animals: str = "error",
         checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
         threads: int | None = None, check_memory: bool = True) -> _forecast.Plan:
    """Forecast a fit: the arguments of :func:`mvreml.fit`, no numeric work.

    Reads and checks the data, builds the pedigree's A^-1 (for a pedigree given as a
    table), the design and the pattern of the mixed-model equations C, and runs the
    engine's symbolic analysis of C (the fill-reducing ordering of ``ordering``). No
    numeric factorization is done.

    Parameters
    ----------
    fixed, random, residual, data, relmat, weights, ordering, missing_animals, threads
        As in :func:`mvreml.fit`; they determine the equations, their ordering and the BLAS
        threads the time forecast is calibrated on.
    init, fix, maxiter, verbose, tol, checkpoint, resume, check_memory
        Accepted (and checked) so that a call to ``fit`` can be turned into one to ``plan``;
        they change neither the sizes nor the cost of an iterate.

    Returns
    -------
    mvreml.Plan
        ``equations``, ``nnz_c``, ``nnz_l`` (exact fill: column counts of L on C permuted by
        the analysis's ordering), ``nnz_l_stored`` (what CHOLMOD stores: its relaxed
        supernodes counted), ``flops`` (sum of squared column counts), ``memory`` (bytes of
        C, L, the selected inverse and the working variates), ``peak_bytes`` (forecast peak
        resident memory), ``available_bytes``, ``seconds`` / ``seconds_per_iterate``
        (calibrated on this machine's dgemm speed, measured once per process) and
        ``fits_in_memory``. Its repr is a short table.

    Raises
    ------
    ArgumentError, FormulaError, DataError, PedigreeError, ModelError
        As :func:`mvreml.fit` would, before any numeric work.
    """
    options = fit_options(relmat=relmat, fix=fix, weights=weights, maxiter=maxiter, verbose=verbose,
                          ordering=ordering, tol=tol, missing_animals=missing_animals)
    _forecast.check_memory_option(check_memory)
    from .api import prepare

    fspec = parse_fixed(fixed)
    rspec = parse_random(random, fspec.response)
    resid = parse_residual(residual, fspec.response)
    timer = Timer()
    design, _, _, blocks = prepare(fspec, rspec, resid, data, relmat=options["relmat"],
                                   weights=options["weights"], missing_animals=options["missing_animals"],
                                   timer=timer)
    model = REMLModel(design, blocks, ordering=options["ordering"], timer=timer)
    n_threads = _threads.choose(threads, model.pattern.n_eq)
    return _forecast.forecast(model, n_threads, timer=timer)
