"""`mvreml.fit`: formula strings + data -> a fitted :class:`mvreml.Result`.

The pipeline, lme4-style: parse (formula) -> design (data) -> :class:`mvreml.Model` (the
array route's object, built from the Design) -> its fit (iterate, report). This module parses,
checks the data and the memory forecast, and hands the rest to the Model: one engine.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence

import pandas as pd

from . import _forecast, _threads, backends, estimable
from ._fitrun import warn_fit
from ._timing import Timer
from ._validate import fit_options
from .design import Design, build_design
from .errors import StartingValueError
from .formula import parse_fixed, parse_random, parse_residual
from .likelihood import ParamBlock
from .start import check_traits, phenotypic_covariance, unit_residuals
from .lattice import Lattice
from .structures import Product, Structure, make_structure

log = logging.getLogger("mvreml")


def fit(fixed: str, random: str | None = None, residual: str | None = None, *, data: pd.DataFrame,
        relmat: Mapping | None = None, init=None, fix: Sequence[str] | None = None,
        weights: str | None = None, maxiter: int = 50, verbose: bool = False,
        ordering: str = "default", tol: float = 1e-7, missing_animals: str = "error",
        checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
        threads: int | None = None, constraints=None, backend: str = "cholmod",
        check_memory: bool = True):
    """Fit a (multivariate) linear mixed model by AI-REML.

    Parameters
    ----------
    fixed : str
        Response and fixed effects, asreml-R style: ``"bwt ~ 1 + sex"`` or
        ``"cbind(velocity, density) ~ trait + at(trait):sex"``.
    random : str, optional
        Random terms: ``"~ us(trait):Family + diag(trait):Block"``, ``"~ vm(animal, ped)"``.
    residual : str, optional
        Residual structure; default ``idv(units)`` (univariate) or ``units:us(trait)``.
    data : pandas.DataFrame
        One row per unit (wide format); missing trait values are NaN.
    relmat : dict, optional
        Names used in ``vm(factor, name)`` -> a :class:`mvreml.Pedigree`, a pedigree table,
        or a matrix stated as G or G^-1: ``mvreml.relmat.matrix(G)``, ``mvreml.relmat.inverse(Ginv)``,
        ``mvreml.relmat.read_giv(path)`` (see :func:`mvreml.relmat.as_relmat`).
    init : dict or "pairwise", optional
        Starting values per term name ("units" for the residual): a float (univariate),
        a t x t array, or a trait-labelled DataFrame; terms not named start from their
        formula ``init=c(...)`` or from a share of the phenotypic (co)variance.
        ``"pairwise"``: fit the univariate (and, for 3+ traits, bivariate) sub-models first
        and start from their combined, positive-definite estimates.
    fix : str or list of str, optional
        Terms (``"Family"``, ``"units"``) or single parameters by component label
        (``"Family:trait!velocity:velocity"``, as in ``Result.varcomp.index``) held at their
        `init` values (all of them: BLUP with known variances); a string is one name. A
        us / corgh matrix is held as a whole term only.
    weights : str, optional
        Column of weights: the residual covariance of a unit is R0 / w.
    maxiter : int
        Maximum number of AI-REML iterations.
    verbose : bool
        Print the iteration log.
    ordering : str
        CHOLMOD fill-reducing ordering.
    tol : float
        Convergence tolerance on the change in log L.
    missing_animals : {"error", "founders"}
        Levels of a ``vm(animal, ped)`` term that are not in the pedigree: an error naming
        them (default), or added to the pedigree as founders (with a PedigreeWarning).
    checkpoint : str or path, optional
        File to which the iteration state (theta, what is held at a boundary, the iteration
        count and history, and a signature of the data and model) is written after every
        iterate, atomically: a fit that is killed loses at most one iterate.
    resume : str or path, optional
        A checkpoint to continue from: the fit re-evaluates log L at its theta and goes on
        from its iteration (``maxiter`` counts the iterations before the interruption too),
        reaching the point the uninterrupted fit would have reached. The model, the data and
        the ``fix=`` values must be those of the fit that wrote it. Give the same path as
        ``checkpoint`` to keep checkpointing the resumed fit.
    threads : int, optional
        BLAS threads of the numeric work of a large factor (threadpoolctl; the environment's
        OPENBLAS_NUM_THREADS is not consulted): its factorization, selected inverse and forward
        solves when one factorization takes 1e11 flops or more; everything else (smaller
        factors, the small dense matrices of the steps) runs on one thread, where threads only
        wait for each other and collapse when another process holds a core. Default: 1 below
        20,000 mixed-model equations, else the cores this process may use. Recorded in
        ``result.model["blas_threads"]``.
    constraints : list of groups or matrix, optional
        Equality / fixed-ratio constraints between variance parameters (asreml's vcc / vcm):
        ``[["site_S1!R", "site_S2!R"]]`` estimates one residual variance for both sites,
        ``[{"a": 1, "b": 0.1}]`` keeps b a tenth of a, a term name ties all of its parameters
        to another term's position by position, and a matrix M (n_params x n_free, one
        positive entry per row) states theta = M phi. The iteration steps on phi; the members
        set from a group's first are reported with bound "C" (asreml's code), all share the
        group's standard error (times their ratio);
        ``result.model["n_varparams"]`` counts a group once. See :mod:`mvreml.constraints`.
    backend : {"cholmod", "mumps"}
        The sparse solver: CHOLMOD on this process (default), or MUMPS over MPI (the extra
        ``mvreml[mpi]``). With "mumps" every MPI rank calls ``fit`` (``mpirun -n N python
        script.py``): rank 0 runs the iterations and returns the Result, the other ranks
        join MUMPS's steps and return None. The iterations are the same; MUMPS's forecast of
        memory per rank is logged after its analysis and kept in ``result.model["mumps"]``.
    check_memory : bool
        Before the first numeric factorization, compare the forecast of :func:`mvreml.plan`
        (the memory the iterates add) with the memory available (MemAvailable, the cgroup
        limit) and raise a ResourceError if it does not fit. False fits anyway. (CHOLMOD only: MUMPS
        logs its own forecast per rank.)

    Returns
    -------
    mvreml.Result
        (None on the MPI ranks other than 0 with ``backend="mumps"``.)

    Raises
    ------
    ArgumentError
        An option of the wrong type or out of range (``maxiter``, ``tol``, ``ordering``, ...).
    ModelError
        A response that is an exact copy (or linear combination) of others.
    StartingValueError
        Starting values that are not positive definite or name unknown terms / traits.
    CheckpointError
        ``resume=`` names a file that is missing, is not a checkpoint, or was written for
        another model or other data.
    ResourceError
        The forecast memory of the iterates is above the memory available (``check_memory``).
    """
    if backends.check(backend) != "cholmod":
        from .backends import mpi
        if not mpi.active():      # MPI: rank 0 fits (this function again), the other ranks serve it
            return mpi.collective(lambda: fit(
                fixed, random, residual, data=data, relmat=relmat, init=init, fix=fix, weights=weights,
                maxiter=maxiter, verbose=verbose, ordering=ordering, tol=tol, missing_animals=missing_animals,
                checkpoint=checkpoint, resume=resume, threads=threads, constraints=constraints,
                backend=backend, check_memory=check_memory))
    t_start = time.perf_counter()
    options = fit_options(relmat=relmat, fix=fix, weights=weights, maxiter=maxiter, verbose=verbose,
                          ordering=ordering, tol=tol, missing_animals=missing_animals)
    fspec = parse_fixed(fixed)
    rspec = parse_random(random, fspec.response)
    resid = parse_residual(residual, fspec.response)
    options["threads"] = threads
    options["constraints"] = constraints
    options["backend"] = backend
    options["check_memory"] = _forecast.check_memory_option(check_memory)
    label = resid.label if residual is None else residual
    return _fit_warn(fspec, rspec, resid, data, init, options, (fixed, random, label), t_start,
                     checkpoint=checkpoint, resume=resume)


def fit_specs(fspec, rspec, resid, *, data: pd.DataFrame, init=None, checkpoint=None, resume=None,
              threads=None, check_memory=True, **options):
    """:func:`fit` on a parsed model (the sub-models of :func:`mvreml.pairwise`).

    Parameters
    ----------
    fspec, rspec, resid
        ``mvreml.formula`` FixedSpec, VarianceSpec and residual RandomTerm (e.g. from
        :func:`mvreml.start.sub_model`).
    data, init, checkpoint, resume, **options
        As in :func:`fit` (``relmat``, ``fix``, ``weights``, ``maxiter``, ...).

    Returns
    -------
    mvreml.Result
        Its ``model`` formulas are None (fixed, random) and the residual's label.
    """
    t_start = time.perf_counter()
    options = fit_options(**options)
    options["threads"] = threads
    options["check_memory"] = _forecast.check_memory_option(check_memory)
    return _fit_warn(fspec, rspec, resid, data, init, options, None, t_start,
                     checkpoint=checkpoint, resume=resume)


def _fit_warn(fspec, rspec, resid, data, init, options, labels, t_start, *, checkpoint, resume):
    """Fit, then give the fit's warnings to the caller (shared by fit and fit_specs)."""
    fix = options.pop("fix")
    result, state = _fit_parsed(fspec, rspec, resid, data, init=init, fix=fix, labels=labels,
                                checkpoint=checkpoint, resume=resume, **options)
    result.model["seconds"] = float(time.perf_counter() - t_start)
    warn_fit(result, state)
    return result


def _fit_parsed(fspec, rspec, resid, data, *, init=None, fix=None, labels=None, relmat=None, weights=None,
                maxiter=50, verbose=False, ordering="default", tol=1e-7, missing_animals="error",
                checkpoint=None, resume=None, threads=None, constraints=None, backend="cholmod",
                check_memory=True):
    """The fit on parsed formula pieces (also used for the sub-models of init="pairwise").

    Returns (Result, FitState); warnings are left to the caller.
    """
    from ._formula_model import FormulaSource, build

    t_start = time.perf_counter()
    timer = Timer()
    solver = backends.make(backend, ordering)
    source = FormulaSource(fspec, rspec, resid, data, relmat, weights, missing_animals, labels)
    # one engine: the formula route builds the Model of the array route from its Design and fits it
    model, Y, P = build(source, ordering=ordering, timer=timer, backend=solver)
    if not (init is None or isinstance(init, (str, Mapping))):
        raise StartingValueError(f"init= takes a dict {{term: matrix}} or 'pairwise', not {type(init).__name__}")
    n_threads = _threads.choose(threads, model._reml.pattern.n_eq)
    with _closing(solver):
        result, state = model._fit(init, fix, maxiter=maxiter, tol=tol, verbose=verbose, constraints=constraints,
                                   threads=n_threads, checkpoint=checkpoint, resume=resume, checked=(Y, P),
                                   t_start=t_start, check_memory=check_memory)
        if solver is not None:
            result.fixef_vcov          # noqa: B018  (computed while MUMPS's processes still serve)
    if solver is not None:
        result.model["backend"] = solver.name
        result.model[solver.name] = solver.memory_estimate()
        result._mixed_model = None          # its MPI processes end with the fit: no refits
    return result, state


@contextlib.contextmanager
def _closing(solver):
    """A backend's processes stop with the fit, whatever ends it (no solves after it)."""
    try:
        yield
    finally:
        if solver is not None:
            solver.close()


def prepare(fspec, rspec, resid, data, *, relmat=None, weights=None, missing_animals="error", timer=None):
    """Design and data checks of a fit, before any parameter is chosen (fit and plan).

    Returns (design, unit residuals Y, phenotypic covariance P, parameter blocks).
    """
    timer = timer if timer is not None else Timer()
    with timer("design"):
        design = build_design(data, fspec, rspec, resid, relmat=relmat, weights=weights,
                              missing_animals=missing_animals)
    Y = unit_residuals(design)
    estimable.check_estimable(design, Y)
    estimable.check_weights(design, data, weights)
    check_traits(design, Y)
    P = phenotypic_covariance(design, Y)
    return design, Y, P, _blocks(design, resid)


def term_structure(rd) -> "Structure":
    """The structure of a random term's compound dimension: its trait structure, a structure
    on another factor (us(site)), or their direct product in the order written."""
    if rd.kcor is not None:
        from .ar1_levels import Ar1Term

        return Ar1Term(_g_structure(rd), rd.kcor)
    return _g_structure(rd)


def _g_structure(rd) -> "Structure":
    term = rd.term
    if not rd.dims:
        traits = tuple(str(x) for x in rd.comp_labels)
        return make_structure(term.structure, traits, k=term.fa_k)
    dim_of = {d.column: d for d in term.dims}
    parts = []
    for name, levels in rd.dims:
        if name == "trait":
            parts.append(make_structure(term.structure, levels, k=term.fa_k))
        else:
            d = dim_of[name]
            parts.append(make_structure(d.structure, levels, k=d.k, dim=name))
    parts = [p for p in parts if not (p.name == "id" and p.t == 1)]
    return parts[0] if len(parts) == 1 else Product(parts)


def _blocks(design: Design, resid) -> list:
    """Parameter blocks: one per random term (in design order), then one per residual section."""
    blocks = []
    start = 0
    for k, rd in enumerate(design.random):
        st = term_structure(rd)
        blocks.append(ParamBlock(name=rd.name, structure=st, start=start, stop=start + st.n_params, k=k))
        start += st.n_params
    for sec, level in enumerate(design.sections or [None]):
        if level is None:
            name, label = "units", None
        else:
            # asreml's label of a section's residual: site_S1!R
            name = f"{design.section_column}_{level}"
            label = f"{name}!R"
        if design.lattice is not None:
            stem = ":".join(c for c, _, _ in design.lattice[sec]["dims"]) if level is None else name
            st = Lattice(design.lattice[sec]["dims"], stem)
            label = None
        else:
            st = make_structure(resid.structure, tuple(design.traits), k=resid.fa_k)
        blocks.append(ParamBlock(name=name, structure=st, start=start, stop=start + st.n_params, k=None,
                                 section=sec if level is not None else None, label=label))
        start += st.n_params
    return blocks
