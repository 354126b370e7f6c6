"""`mvreml.Model`: a mixed model built from arrays, for programs that embed mvreml.

>>> m = mvreml.Model(Y, X, random=[mvreml.Random(Z, mvreml.structures.US(2), Kinv=Ainv, name="animal")])
>>> m.loglik(theta); m.evaluate(theta).score; m.solve(theta).blups["animal"]
>>> res = m.fit()                      # a mvreml.Result, as mvreml.fit returns
>>> res2 = m.refit(Y_simulated)        # same design: the MME pattern and CHOLMOD analysis reused

The model builds the objects the formula route builds (a :class:`mvreml.design.Design`,
the parameter blocks, a :class:`mvreml.likelihood.REMLModel`) and fits them with the same
iteration and report (:func:`mvreml.reml.iterate`, :func:`mvreml.report.build_result`). The
formula route is this class too: :func:`mvreml.fit` builds a Model from its Design
(:meth:`Model.from_formula`, :mod:`mvreml._formula_model`) and calls :meth:`Model._fit`, and its
Result keeps the model (``Result.mixed_model``, ``Result.refit(y)``): one path.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from . import _arrays, estimable, fa_result, fa_sparse
from ._arrays import ArrayInputs, Random, Residual
from ._solutions import Evaluation, Solution
from ._fitrun import fix_mask, run, warn_fit
from ._lsq import FixedLeastSquares
from ._timing import Timer
from .errors import ArgumentError, ModelError, StartingValueError
from .likelihood import Infeasible, REMLModel
from .report import build_result
from .start import check_traits, phenotypic_covariance, unit_residuals

if TYPE_CHECKING:
    import os

    import pandas as pd

    from .results import Result

__all__ = ["Model", "Random", "Residual", "Evaluation", "Solution"]

class Model:
    """A (multivariate) linear mixed model built from arrays: y = X b + sum_k Z_k u_k + e.

    Parameters
    ----------
    y : array (n x t) or (n,)
        The responses, one row per unit; NaN marks a missing trait. Rows with no observed
        trait are dropped (with a DataWarning).
    X : array or scipy.sparse matrix (n x p), or a sequence of t of them, optional
        Fixed effects. One matrix is applied to every trait (trait-specific effects: each
        trait gets its own copy of the p columns, as ``trait + at(trait):x`` in a formula);
        a sequence gives each trait its own matrix. Columns aliased with earlier ones are
        dropped (listed in ``Result.diagnostics``). None: no fixed effect.
    random : sequence of Random, optional
        The random terms, :class:`mvreml.Random`.
    residual : Residual, optional
        The residual structure, :class:`mvreml.Residual`; default US on the traits (Idv for
        one trait).
    weights : array (n,), optional
        Positive unit weights: R_i = R0 / w_i.
    traits : sequence of str, optional
        Names of the columns of y (default "y" univariate, "y1", "y2", ...).
    fixef_names : sequence of str (or one per trait), optional
        Names of the columns of X (default "x1", "x2", ...); multivariate names are
        ``"{trait}:{name}"``.
    ordering : str
        CHOLMOD fill-reducing ordering ("default", "amd", "metis", ...).

    Raises
    ------
    ArgumentError
        An argument of the wrong kind or size; the message names it and gives the sizes.
    DataError
        Non-finite values in X, Z or the weights (naming the row), a trait never observed.
    RelmatError
        A K or K^-1 that is not symmetric positive definite (naming the level at fault).
    """

    def __init__(self, y: ArrayLike, X: "ArrayLike | sp.spmatrix | Sequence | None" = None,
                 random: Sequence[Random] | Random | None = None, residual: Residual | None = None, *,
                 weights: ArrayLike | None = None, traits: Sequence[str] | None = None,
                 fixef_names: Sequence | None = None, ordering: str = "default") -> None:
        from ._validate import fit_options

        ordering = fit_options(ordering=ordering)["ordering"]
        Y, traits = _arrays.check_response(y, traits)
        n = Y.shape[0]
        Xs, names, per_trait = _arrays.check_fixed(X, n, traits, fixef_names)
        inputs = ArrayInputs(Y=Y, traits=traits, X=Xs, fixef_names=names,
                             random=_arrays.check_random(random, n, traits),
                             residual=_arrays.check_residual(residual, n, traits),
                             weights=_arrays.check_weights(weights, n), per_trait_x=per_trait)
        self._weighted = weights is not None
        self._setup(inputs, ordering)

    def _setup(self, inputs: ArrayInputs | None, ordering: str, reml: REMLModel | None = None,
               shared: dict | None = None, formula=None, Y: np.ndarray | None = None):
        # a model is built from arrays (inputs) or from formulas (formula: a FormulaSource);
        # past this point both are a Design, its blocks and a REML model
        self._inputs = inputs
        self._formula = formula
        self._Y = inputs.Y if inputs is not None else Y     # responses, one row per row given
        self._ordering = ordering
        # what refits of the same design share: least squares on X, the label of X
        self._shared = shared if shared is not None else {}
        self._last_theta = None          # the estimates of this model's last fit
        if reml is None:
            design, blocks = _arrays.build(inputs)
            reml = fa_sparse.make_model(design, blocks, ordering=ordering, timer=Timer())
        self._reml = reml
        multi = len(reml.design.traits) > 1
        self._names = [lab for b in reml.blocks for lab in b.structure.labels(b.label_name, multi)]

    @classmethod
    def _from_design(cls, design, blocks: list, formula, *, ordering: str = "default", timer=None,
                     backend=None) -> "Model":
        """The Model of a Design built from formulas (:mvreml.fit and :meth:`from_formula`): the
        REML model of the formula route (the fa factor formulation where it applies; a MUMPS
        backend's dense one)."""
        from ._formula_model import response_matrix

        if backend is None:
            reml = fa_sparse.make_model(design, blocks, ordering=ordering, timer=timer)
        else:
            reml = REMLModel(design, blocks, ordering=ordering, timer=timer, backend=backend)
        new = object.__new__(cls)
        new._weighted = formula.weights is not None
        new._setup(None, ordering, reml=reml, formula=formula, Y=response_matrix(formula))
        return new

    @classmethod
    def from_formula(cls, fixed: str, random: str | None = None, residual: str | None = None, *,
                     data: "pd.DataFrame", relmat: Mapping | None = None, weights: str | None = None,
                     missing_animals: str = "error", ordering: str = "default") -> "Model":
        """The model of formula strings and a data frame, as :func:`mvreml.fit` builds it.

        ``mvreml.fit(fixed, random, residual, data=..., **options)`` is
        ``Model.from_formula(fixed, random, residual, data=...).fit(**options)``; the model
        then takes new responses (:meth:`with_response`, :meth:`refit`: y on the rows of
        ``data``, as an array or a frame with the response columns), a new fixed formula
        (:meth:`with_fixed`) and extra columns to scan (:meth:`scan`).

        Parameters
        ----------
        fixed, random, residual, data, relmat, weights, missing_animals, ordering
            As in :func:`mvreml.fit`.

        Returns
        -------
        Model
        """
        from ._formula_model import from_formula

        return from_formula(fixed, random, residual, data=data, relmat=relmat, weights=weights,
                            missing_animals=missing_animals, ordering=ordering)

    # ------------------------------------------------------------------ description
    @property
    def design(self):
        """The engine's :class:`mvreml.design.Design` (what the formula route builds too)."""
        return self._reml.design

    @property
    def blocks(self) -> list:
        """The parameter blocks (one per random term, then one per residual group)."""
        return self._reml.blocks

    @property
    def traits(self) -> list[str]:
        return list(self.design.traits)

    @property
    def terms(self) -> list[str]:
        """Names of the variance terms: the random terms, then "units" (or the residual groups)."""
        return [b.name for b in self.blocks]

    @property
    def parameter_names(self) -> list[str]:
        """The labels of theta's entries, as in ``Result.varcomp.index``."""
        return list(self._names)

    @property
    def n_params(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        d = self.design
        return (f"Model({d.n_units} units, {d.n_obs} records, traits {self.traits}, p = {d.p}, terms "
                f"{self.terms}, {self.n_params} variance parameters)")

    # ------------------------------------------------------------------ theta
    def theta(self, values: "ArrayLike | Mapping[str, float]") -> np.ndarray:
        """theta as a vector from a vector or a mapping {parameter label: value} (all of them)."""
        if isinstance(values, Mapping):
            unknown = [k for k in values if k not in self._names]
            if unknown:
                raise ArgumentError(f"theta names unknown parameters {unknown}; the parameters are "
                                    f"{self._names}", argument="theta")
            missing = [k for k in self._names if k not in values]
            if missing:
                raise ArgumentError(f"theta gives no value for {missing}", argument="theta")
            values = [values[k] for k in self._names]
        try:
            th = np.array(values, dtype=float).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"theta must be numbers: {exc}", argument="theta") from None
        if th.shape[0] != self.n_params:
            raise ArgumentError(f"theta has {th.shape[0]} values but the model has {self.n_params} parameters "
                                f"({self._names})", argument="theta")
        if not np.all(np.isfinite(th)):
            raise ArgumentError("theta has non-finite values", argument="theta")
        return th

    def named(self, theta: "ArrayLike | Mapping[str, float]") -> dict[str, float]:
        """theta as {parameter label: value}."""
        return dict(zip(self._names, map(float, self.theta(theta))))

    def _evaluate(self, theta, derivatives: bool):
        th = self.theta(theta)
        try:
            return self._reml.evaluate(th, derivatives=derivatives)
        except Infeasible as exc:
            raise ArgumentError(f"theta is outside the parameter space: {exc}", argument="theta") from None

    def loglik(self, theta: "ArrayLike | Mapping[str, float]") -> float:
        """The REML log-likelihood at theta (a vector or {label: value})."""
        return float(self._evaluate(theta, False).loglik)

    def evaluate(self, theta: "ArrayLike | Mapping[str, float]") -> Evaluation:
        """log L, its score and the average-information matrix at theta."""
        ev = self._evaluate(theta, True)
        return Evaluation(float(ev.loglik), ev.score.copy(), ev.ai.copy(), tuple(self._names))

    def solve(self, theta: "ArrayLike | Mapping[str, float]") -> Solution:
        """Fixed effects, BLUPs and their prediction error variances at theta."""
        ev = self._evaluate(theta, False)
        d, pat = self.design, self._reml.pattern
        diag = self._reml.pev_diagonal()
        p = d.p
        blups, pev, levels, columns = {}, {}, {}, {}
        for rd, off in zip(d.random, pat.offsets):
            n = rd.q * rd.t
            blups[rd.name] = ev.solution[off:off + n].reshape(rd.q, rd.t).copy()
            pev[rd.name] = diag[off:off + n].reshape(rd.q, rd.t).copy()
            levels[rd.name] = [str(x) for x in rd.levels]
            columns[rd.name] = list(rd.comp_labels)
        res = np.full(self._Y.shape, np.nan)
        n = d.n_obs - d.n_missing_plots          # a spatial residual's missing plots are no data
        res[d.unit_rows[d.obs_unit[:n]], d.obs_trait[:n]] = ev.residuals[:n]
        return Solution(fixef=ev.solution[:p].copy(), fixef_se=np.sqrt(np.clip(diag[:p], 0, None)),
                        fixef_names=list(d.fixef_names), blups=blups, pev=pev, levels=levels, columns=columns,
                        residuals=res, loglik=float(ev.loglik))

    # ------------------------------------------------------------------ fitting
    def start(self, init: "Mapping | ArrayLike | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """(theta0, scale): the starting values ``fit`` uses and a typical magnitude per parameter.

        ``init`` as in :meth:`fit`.
        """
        d = self.design
        Y = unit_residuals(d)
        return self._start(init, phenotypic_covariance(d, Y), Y)[:2]

    def _start(self, init, P, Y=None):
        from ._model_start import model_start

        return model_start(self, init, P, Y)

    def fit(self, init: "Mapping | ArrayLike | str | None" = None, fix: str | Sequence[str] | None = None, *,
            maxiter: int = 50, tol: float = 1e-7, verbose: bool = False,
            constraints: "Sequence | ArrayLike | None" = None, fixef_vcov: bool = True,
            threads: int | None = None, checkpoint: "str | os.PathLike | None" = None,
            resume: "str | os.PathLike | None" = None, check_memory: bool = True) -> "Result":
        """Fit by AI-REML, as :func:`mvreml.fit` does (which builds a Model and calls this).

        Parameters
        ----------
        init : mapping or vector, optional
            Starting values: {term: t x t matrix (or a number)}, {parameter label: value}, or
            both; or a whole theta vector. Others start from a share of the phenotypic
            covariance, as in :func:`mvreml.fit`. A model built from formulas also takes
            ``"pairwise"``.
        fix : str or sequence of str, optional
            Terms or single parameters (by label) held at their ``init`` values.
        maxiter, tol, verbose, threads, checkpoint, resume
            As in :func:`mvreml.fit`.
        constraints : list of groups or matrix, optional
            Equality / fixed-ratio constraints between parameters by component label (or a
            constraint matrix M, theta = M phi), as in :func:`mvreml.fit`.
        fixef_vcov : bool
            Keep the fixed effects' covariance matrix (``Result.fixef_vcov``, which Wald tests
            and ``Result.contrast`` need). It is computed on first access (p solves with the
            factor at the estimates, or a read of the selected inverse), not by the fit. False:
            none (``Result.fixef_vcov`` None; the standard errors of the fixed effects are kept).
        check_memory : bool
            Before the first fit of this model (its symbolic analysis, which the fit needs
            anyway), forecast the memory of the iterates (:func:`mvreml.plan`) and raise
            :class:`mvreml.errors.ResourceError` when it is above the memory available,
            instead of being killed part-way; refits share the analysis and are not checked
            again. The forecast is kept in ``Result.model["forecast"]``. False fits anyway.

        Returns
        -------
        mvreml.Result
            Its :attr:`mvreml.Result.mixed_model` is this model (:meth:`mvreml.Result.refit`).

        Raises
        ------
        mvreml.errors.ResourceError
            The forecast memory is above the memory available (``check_memory``).
        """
        from ._forecast import check_memory_option
        from ._validate import fit_options

        opts = fit_options(maxiter=maxiter, verbose=verbose, tol=tol, fix=fix)
        result, state = self._fit(init, opts["fix"], maxiter=opts["maxiter"], tol=opts["tol"],
                                  verbose=opts["verbose"], constraints=constraints, fixef_vcov=fixef_vcov,
                                  threads=threads, checkpoint=checkpoint, resume=resume,
                                  check_memory=check_memory_option(check_memory))
        warn_fit(result, state)
        return result

    def _fit(self, init, fix, *, maxiter: int, tol: float, verbose: bool = False, constraints=None,
             fixef_vcov: bool = True, threads=None, checkpoint=None, resume=None, checked=None,
             t_start: float | None = None, check_memory: bool = False):
        """The fit of both routes; returns (Result, FitState), warnings left to the caller.

        ``checked``: (Y, P) of :func:`mvreml.api.prepare`, which ran the data checks of the
        formula route's first fit (its timer kept); else they are run here. Everything from
        the data checks to the result runs under the fit's BLAS threads (mvreml._threads:
        one thread but for a large factor's numeric work; fa starting values included).
        ``check_memory``: the memory forecast before the first analysis of this model's pattern.
        """
        from . import _threads

        n_threads = _threads.choose(threads, self._reml.pattern.n_eq)
        with _threads.fit_threads(n_threads):
            result, state = self._fit_steps(init, fix, maxiter=maxiter, tol=tol, verbose=verbose,
                                            constraints=constraints, fixef_vcov=fixef_vcov, threads=threads,
                                            checkpoint=checkpoint, resume=resume, checked=checked,
                                            t_start=t_start, check_memory=check_memory, n_threads=n_threads)
        result.model["blas_threads"] = n_threads
        return result, state

    def _fit_steps(self, init, fix, *, maxiter, tol, verbose, constraints, fixef_vcov, threads, checkpoint,
                   resume, checked, t_start, check_memory, n_threads):
        t_start = time.perf_counter() if t_start is None else t_start
        d, model = self.design, self._reml
        asked = init
        if checked is None:
            model.timer = Timer()
        forecast = None
        if check_memory and model.backend is None and model.factor is None:
            from ._forecast import before_fit

            forecast = before_fit(model, n_threads)
        if checked is None:
            ls = self._shared.get("lsq")
            Y = ls.unit_residuals(d) if ls is not None else unit_residuals(d)
            estimable.check_estimable(d, Y)
            if self._weighted:
                estimable.check_weights(d, None if self._formula is None else self._formula.data,
                                        "weights" if self._formula is None else self._formula.weights)
            check_traits(d, Y)
            P = phenotypic_covariance(d, Y)
        else:
            Y, P = checked
        if isinstance(init, str) and init == "pairwise" and self._formula is not None and resume is None:
            from ._formula_model import pairwise

            init = pairwise(self, P, maxiter=maxiter, tol=tol)
        elif isinstance(init, str):
            if init != "pairwise":
                raise StartingValueError(f"init={init!r}: give a dict of starting values or init='pairwise'")
            if self._formula is None:
                raise StartingValueError("init='pairwise' fits sub-models of formulas: a model built from "
                                         "arrays takes a dict or a theta vector", term="init")
            init = None                 # resuming: theta comes from the checkpoint
        theta0, scale, given = self._start(init, P, Y)
        mask = fix_mask(self.blocks, self._names, fix, given,
                        error=ArgumentError if self._formula is None else ModelError)
        state = run(model, theta0, scale, mask, maxiter=maxiter, tol=tol, verbose=verbose,
                    constraints=constraints, checkpoint=checkpoint, resume=resume)
        result = build_result(fa_result.result_model(model), state, *self._labels(), timer=model.timer,
                              seconds=time.perf_counter() - t_start, fixef_vcov=bool(fixef_vcov))
        if forecast is not None:
            result.model["forecast"] = forecast
        self._last_theta = np.array(state.theta, copy=True)
        result._mixed_model = self
        result._refit_options = dict(init=asked, fix=fix, maxiter=maxiter, tol=tol, constraints=constraints,
                                     fixef_vcov=fixef_vcov, threads=threads)
        return result, state

    def _labels(self) -> tuple:
        """(fixed, random, residual) of Result.model: the formulas' text, or for arrays a label of X,
        the random terms and the residual structure."""
        if self._formula is not None:
            fixed, random, residual = self._formula.labels or (None, None, self._formula.resid.label)
            return fixed, random, residual
        return (self._fixed_label(), [b.name for b in self.blocks[:self._reml.n_random]],
                str(self._inputs.residual.structure))

    def _fixed_label(self) -> str:
        """The fixed model's description in Result.model["fixed"]: columns and a hash of X,
        so that mvreml.lrt refuses fits with different fixed effects (as it does formulas)."""
        import hashlib

        if "xlabel" in self._shared:
            return self._shared["xlabel"]
        X = self.design.X
        h = hashlib.sha1()
        for arr in (X.indptr, X.indices, X.data):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\0".join(self.design.fixef_names).encode())
        self._shared["xlabel"] = f"arrays: X with {X.shape[1]} columns [{h.hexdigest()[:12]}]"
        return self._shared["xlabel"]

    # ------------------------------------------------------------------ re-use
    def with_response(self, y: "ArrayLike | pd.DataFrame") -> "Model":
        """The same model with new responses y (n x t, same traits).

        With the same missing-value pattern only y changes: the new model shares the design's
        layout, the mixed-model equations' pattern and the CHOLMOD symbolic analysis (a copy
        of the factor), so its evaluations and fits skip all of that set-up. A different
        pattern of NaN changes the equations: the model is then built afresh (the inputs'
        checks and K^-1 are still reused by a model from arrays). Refits of one design also
        share a Cholesky factor of X'X for the residuals after the fixed effects (starting
        values, checks), where a fresh fit runs LSQR: the two agree to rounding.

        A model built from formulas takes y on the rows of its data: an array (rows x
        responses) or a data frame / series with the response columns on the data's index.
        Its design is built afresh (from the data with these responses) when the pattern of
        NaN differs, when a spatial residual adds missing plots, or for the fa factor
        formulation.
        """
        from . import _formula_model

        if self._formula is not None:
            Y = _formula_model.new_response(self._formula, y)
        else:
            Y, _ = _arrays.check_response(y, None)
            if Y.shape != self._Y.shape:
                raise ArgumentError(f"y has shape {Y.shape} but the model's y has {self._Y.shape}", argument="y")
        d = self.design
        same = (np.array_equal(np.isnan(Y), np.isnan(self._Y)) and d.n_missing_plots == 0
                and type(self._reml) is REMLModel and self._reml.backend is None)
        new = object.__new__(Model)
        new._weighted = self._weighted
        if not same:
            if self._formula is not None:
                return _formula_model.build(_formula_model.with_data_response(self._formula, Y),
                                            ordering=self._ordering)[0]
            new._setup(replace(self._inputs, Y=Y), self._ordering)
            return new
        rows = d.unit_rows if d.unit_rows is not None else np.arange(Y.shape[0])
        design = replace(d, y=Y[rows][d.obs_unit, d.obs_trait])
        reml = copy.copy(self._reml)
        reml.design = design
        reml.timer = Timer()
        reml.factor_theta = None
        if reml.factor is not None:
            if hasattr(reml.factor, "copy"):
                reml.factor = reml.factor.copy()
            else:                     # scikit-sparse 0.5: no copy, analyse again
                reml.factor, reml.selinv = None, None
        if "lsq" not in self._shared:
            self._shared["lsq"] = FixedLeastSquares(d.X)
        new._setup(None if self._inputs is None else replace(self._inputs, Y=Y), self._ordering, reml=reml,
                   shared=self._shared, formula=self._formula, Y=Y)
        return new

    def refit(self, y: ArrayLike, *, warm: bool = False, **fit_options) -> "Result":
        """``with_response(y).fit(**fit_options)``: a fit of new responses on the same design.

        Parameters
        ----------
        y : array (n x t)
            New responses, as :meth:`with_response` takes them.
        warm : bool
            Start from the estimates of this model's last :meth:`fit` (not those of earlier
            refits, so that a refit does not depend on the order of the others) instead of the
            default starting values. Off by default, so that a refit starts where a fresh fit
            of the same data starts and reaches the same estimates; a warm start reaches the
            same optimum to the convergence tolerance. Ignored when ``init=`` is given. A
            chain of refits, each from the one before (replicates of a simulation study):
            ``res = res.refit(y, warm=True)`` (:meth:`mvreml.Result.refit` refits the model of
            ``res``, whose last fit is ``res``).
        **fit_options
            As :meth:`fit` takes them (``init``, ``fix``, ``constraints``, ``maxiter``, ...).
        """
        new = self.with_response(y)
        if warm and fit_options.get("init") is None:
            if self._last_theta is None:
                raise ArgumentError("refit(warm=True) starts from this model's last fit: call fit() first",
                                    argument="warm")
            fit_options["init"] = self._last_theta
        return new.fit(**fit_options)

    def scan(self, columns: ArrayLike, theta: "ArrayLike | Mapping[str, float] | None" = None, *,
             names: Sequence[str] | None = None) -> "pd.DataFrame":
        """Test extra fixed-effect columns one at a time with the variance parameters held
        (a GWAS scan): for each column, its trait-specific effects, standard errors and Wald
        tests as ``with_fixed([X, column]).fit(init=theta, fix=<every term>)`` would give
        them, from the factor this model holds (no new design, pattern or factorization;
        :mod:`mvreml.scan`).

        Parameters
        ----------
        columns : array (n x m)
            One value per row of y for each of m columns (genotypes coded 0 / 1 / 2, ...).
        theta : vector or mapping, optional
            The variance parameters (default: the estimates of this model's last fit).
        names : sequence of str, optional
            Names of the columns.

        Returns
        -------
        pandas.DataFrame
            Index (column, trait): estimate, std_error, z_ratio, pvalue, and per column the
            joint Wald statistic over the traits (wald, wald_pvalue) and aliased.
        """
        from .scan import scan_columns

        if theta is None:
            if self._last_theta is None:
                raise ArgumentError("scan() holds the variance parameters at theta: give theta= or call fit() "
                                    "first", argument="theta")
            th = self._last_theta
        else:
            th = self.theta(theta)
        try:
            return scan_columns(self._reml, th, columns, self._Y.shape[0], names, self.traits)
        except Infeasible as exc:
            raise ArgumentError(f"theta is outside the parameter space: {exc}", argument="theta") from None

    def with_fixed(self, X: "ArrayLike | sp.spmatrix | Sequence | str | None",
                   fixef_names: Sequence | None = None, *, data: "pd.DataFrame | None" = None) -> "Model":
        """The same model with a new fixed-effect matrix (as the constructor's X).

        The mixed-model equations change with X, so their pattern and analysis are made
        again; the checks of y, Z and K and the K^-1 of the random terms are reused.

        A model built from formulas takes a fixed formula instead (``"y ~ 1 + sex + snp"``,
        the same responses) and optionally ``data=`` (the data with new columns); its design
        is built afresh. (:meth:`scan` tests extra columns one at a time without a new design.)
        """
        if self._formula is not None:
            from ._formula_model import with_fixed

            return with_fixed(self, X, data)
        if data is not None:
            raise ArgumentError("data= is for models built from formulas; give X as an array", argument="data")
        inp = self._inputs
        Xs, names, per_trait = _arrays.check_fixed(X, inp.Y.shape[0], inp.traits, fixef_names)
        new = object.__new__(Model)
        new._weighted = self._weighted
        new._setup(replace(inp, X=Xs, fixef_names=names, per_trait_x=per_trait), self._ordering)
        return new

