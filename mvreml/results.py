"""The fitted model: tables, functions of the variance components, tests, summary, JSON.

:class:`Result` is built by the fitting engine and does no fitting itself: everything here
works from the stored estimates and their sampling covariances, so a Result read back with
:meth:`Result.from_json` reports exactly what the original did.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats

from . import _summary
from .errors import ExpressionError, ModelError, TermError
from .vpredict import ComponentIndex, Dual, delta_se, evaluate, split_label
from .wald import linear_combination, wald_table

__all__ = ["Result", "LRT", "lrt"]

_LOG2PI = math.log(2.0 * math.pi)
_MODEL_KEYS = ("fixed", "random", "residual", "n_varparams", "data_signature")


@dataclass(eq=False, repr=False)
class Result:
    """A fitted multivariate linear mixed model (REML).

    Built by :func:`mvreml.fit`; every field is kept by :meth:`to_json` /
    :meth:`from_json`. Treat it as read-only: derived lookups are cached.

    Attributes
    ----------
    traits : list of str
        Response names (one for a univariate model).
    loglik : float
        REML log-likelihood including the constant ``-0.5 (N - p) log 2 pi`` (lme4/nlme
        convention); :attr:`loglik_asreml` is ASReml's figure.
    n_obs, rank_x : int
        N (observed values in long format) and p (rank of X).
    n_units, n_dropped : int
        Units used and rows dropped.
    converged : bool
        Whether the convergence criteria were met; ``reason`` says why it stopped.
    iterations : int
        Iterations done; ``history`` logs them (iteration, loglik, change, step, seconds).
    varcomp : DataFrame
        One row per variance parameter, labelled asreml-style (the label starts with the term
        name): term, estimate, std_error, z_ratio, bound ("P", "B", "F", "U"), kind.
    components : DataFrame
        One row per distinct element of each term's trait covariance matrix (term, trait_1,
        trait_2, estimate), with ``components_vcov`` their sampling covariance.
    structures, term_traits : dict
        Term -> structure name, term -> traits covered.
    fixef : DataFrame
        Fixed effects (estimate, std_error); ``fixef_vcov`` their covariance (None if not
        stored) and ``fixed_terms`` the positions of each fixed term's columns.
    blups : dict
        Term -> DataFrame indexed by level, columns <trait>... then pev_<trait>...
    diagnostics : list of str
        Plain-language findings.
    model : dict
        fixed, random, residual formulas; n_varparams; data_signature; n_fixed_params.
    """

    traits: list
    loglik: float
    n_obs: int
    rank_x: int
    n_units: int
    n_dropped: int
    converged: bool
    reason: str
    iterations: int
    history: pd.DataFrame
    varcomp: pd.DataFrame
    components: pd.DataFrame
    components_vcov: np.ndarray
    structures: dict
    term_traits: dict
    fixef: pd.DataFrame
    fixef_vcov: np.ndarray | None
    fixed_terms: dict
    blups: dict
    diagnostics: list
    model: dict = field(default_factory=dict)
    residual_table: pd.DataFrame | None = None

    def __post_init__(self):
        self.traits = [str(t) for t in self.traits]
        self.loglik = float(self.loglik)
        for name in ("n_obs", "rank_x", "n_units", "n_dropped", "iterations"):
            setattr(self, name, int(getattr(self, name)))
        self.converged = bool(self.converged)
        self.reason = str(self.reason)
        self.components_vcov = np.asarray(self.components_vcov, dtype=float)
        if self.fixef_vcov is not None:
            self.fixef_vcov = np.asarray(self.fixef_vcov, dtype=float)
        self.structures = {str(k): str(v) for k, v in self.structures.items()}
        self.term_traits = {str(k): [str(t) for t in v] for k, v in self.term_traits.items()}
        self.fixed_terms = {str(k): [int(i) for i in v] for k, v in self.fixed_terms.items()}
        self.blups = dict(self.blups)
        self.diagnostics = [str(d) for d in self.diagnostics]
        self.model = dict(self.model)
        self._validate()

    def __getstate__(self):
        # the fitted model behind predict(classify=) holds a CHOLMOD factor: not pickled (an
        # unpickled Result, like one read from JSON, predicts from its tables only)
        self.fixef_vcov                       # noqa: B018  (computed now if it is pending)
        state = dict(self.__dict__)
        for key in ("_fitted", "_fixef_vcov_pending", "_mixed_model", "_refit_options"):
            state.pop(key, None)
        return state

    # ------------------------------------------------------------------ the model behind it
    @property
    def mixed_model(self):
        """The :class:`mvreml.Model` this Result was fitted from (for :func:`mvreml.fit` too: the
        model its formulas built), to refit with new responses or fixed effects; None for a
        Result read from JSON, unpickled, or fitted over MPI (``backend="mumps"``)."""
        return self.__dict__.get("_mixed_model")

    def refit(self, y, **fit_options) -> "Result":
        """The same model fitted to new responses y, with this fit's options (``init``, ``fix``,
        ``constraints``, ``maxiter``, ``tol``, ...) unless given here: lme4's ``refit``.

        ``y`` as :meth:`mvreml.Model.with_response` takes it (for a formula fit: on the rows
        of the data, an array or a frame with the response columns). The design's pattern and
        analysis are reused when the missing values fall alike (:meth:`mvreml.Model.refit`,
        ``warm=True`` included).
        """
        model = self.mixed_model
        if model is None:
            raise ModelError("this Result keeps no model to refit (read from JSON, unpickled, or fitted with "
                             "backend='mumps'): fit again with mvreml.fit or mvreml.Model")
        options = dict(self.__dict__.get("_refit_options") or {})
        options.update(fit_options)
        return model.refit(y, **options)

    def _validate(self):
        """Catch an inconsistent Result when it is made, not when a table is asked for."""
        def need(frame, name, columns):
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ModelError(f"Result.{name} lacks columns {missing}")
        need(self.varcomp, "varcomp", ["term", "estimate", "std_error", "z_ratio", "bound", "kind"])
        need(self.components, "components", ["term", "trait_1", "trait_2", "estimate"])
        need(self.fixef, "fixef", ["estimate", "std_error"])
        need(self.history, "history", ["iteration", "loglik", "change", "step", "seconds"])
        missing = [k for k in _MODEL_KEYS if k not in self.model]
        if missing:
            raise ModelError(f"Result.model lacks keys {missing}")
        nc = len(self.components)
        if self.components_vcov.shape != (nc, nc):
            raise ModelError(f"components_vcov has shape {self.components_vcov.shape}, "
                             f"expected ({nc}, {nc}) for {nc} components")
        p = len(self.fixef)
        if self.fixef_vcov is not None and self.fixef_vcov.shape != (p, p):
            raise ModelError(f"fixef_vcov has shape {self.fixef_vcov.shape}, expected ({p}, {p})")
        positions = sorted(i for v in self.fixed_terms.values() for i in v)
        if positions != list(range(p)):
            raise ModelError(f"fixed_terms must cover each of the {p} rows of fixef exactly once; "
                             f"got positions {positions}")
        for term in set(self.components["term"]):
            if term not in self.term_traits or term not in self.structures:
                raise ModelError(f"component term {term!r} has no entry in term_traits/structures")

    # ------------------------------------------------------------------ scalars
    @property
    def loglik_asreml(self) -> float:
        """ASReml's REML log-likelihood: ``loglik + 0.5 (N - p) log 2 pi``."""
        return self.loglik + 0.5 * (self.n_obs - self.rank_x) * _LOG2PI

    @property
    def n_varparams(self) -> int:
        """Number of free, estimated variance parameters."""
        return int(self.model["n_varparams"])

    @property
    def aic(self) -> float:
        """REML AIC, ``-2 loglik + 2 k`` with k the variance parameters (lme4 convention loglik)."""
        return -2.0 * self.loglik + 2.0 * self.n_varparams

    @property
    def bic(self) -> float:
        """REML BIC, ``-2 loglik + k log(N - p)``."""
        return -2.0 * self.loglik + self.n_varparams * math.log(self.n_obs - self.rank_x)

    # ------------------------------------------------------------------ components
    @cached_property
    def _index(self) -> ComponentIndex:
        return ComponentIndex.build(self.components, self.term_traits, self.varcomp)

    @cached_property
    def _x(self) -> np.ndarray:
        return self.components["estimate"].to_numpy(dtype=float)

    def _term(self, term: str) -> list[str]:
        if term not in self.term_traits:
            raise TermError(term, self.term_traits)
        return self.term_traits[term]

    def covariance(self, term: str) -> pd.DataFrame:
        """The term's trait covariance matrix (t x t, labelled by trait; 1 x 1 univariate).

        Parameters
        ----------
        term : str
            Term name ("animal", "Family", residual "units").
        """
        traits = self._term(term)
        if self.structures.get(term) == "ar1term":
            # its variances and correlations live on the positions (K(rho)), not in a small G:
            # a 1 x 1 identity here would read as a variance of 1
            rows = self.varcomp.index[self.varcomp["term"] == term]
            raise ModelError(f"term {term!r} has its variances and correlations on the positions of an "
                             f"ar1 dimension, not in a level covariance matrix: read them from "
                             f"res.varcomp ({', '.join(rows)})")
        out = pd.DataFrame(np.nan, index=pd.Index(traits), columns=pd.Index(traits))
        for a in traits:
            for b in traits:
                k = self._index.position.get((term, a, b))
                if k is not None:
                    out.loc[a, b] = self._x[k]
        return out

    def loadings(self, term: str) -> pd.DataFrame:
        """Loadings of an fa(k) or rr(k) term: levels x factors (fa1, fa2, ...), in the constrained
        rotation asreml reports (L[i, m] = 0 for i < m, diagonal >= 0).

        Parameters
        ----------
        term : str
            An fa term, e.g. ``"fa(site, 2):gen"`` or a trait structure ``fa(trait, 1)``'s term.
        """
        levels = self._term(term)
        rows = self.varcomp[(self.varcomp["term"] == term) & (self.varcomp["kind"] == "loading")]
        if self.structures.get(term) not in ("fa", "rr") or rows.empty:
            raise ModelError(f"term {term!r} is not a factor-analytic fa(k) or rr(k) term "
                             f"(its structure: {self.structures.get(term)})")
        t, n = len(levels), len(rows)
        k = next(k for k in range(1, t + 1) if sum(t - m for m in range(k)) == n)
        L = np.zeros((t, k))
        values = iter(rows["estimate"].to_numpy(dtype=float))
        for m in range(k):
            for i in range(m, t):
                L[i, m] = next(values)
        return pd.DataFrame(L, index=pd.Index(levels), columns=[f"fa{m + 1}" for m in range(k)])

    def _element(self, term: str, a: str, b: str) -> Dual:
        return self._index.element(term, a, b, self._x)

    def correlation(self, term: str, se: bool = False) -> pd.DataFrame:
        """Correlations of the term's trait covariance matrix.

        Parameters
        ----------
        term : str
            Term name.
        se : bool
            False: the t x t correlation matrix. True: a long table (trait_1, trait_2,
            estimate, std_error; delta method) of the off-diagonal pairs, lower triangle
            row-wise. A correlation involving a zero variance is NaN.
        """
        traits = self._term(term)
        rows = []
        for i, a in enumerate(traits):
            for b in traits[: i + 1]:
                try:
                    r = self._element(term, a, b) / (self._element(term, a, a)
                                                     * self._element(term, b, b)).sqrt()
                    est, err = r.value, delta_se(r.grad, self.components_vcov)
                except ExpressionError:
                    est = err = math.nan
                rows.append((a, b, 1.0 if a == b and np.isfinite(est) else est, 0.0 if a == b else err))
        if not se:
            out = pd.DataFrame(np.nan, index=pd.Index(traits), columns=pd.Index(traits))
            for a, b, est, _ in rows:
                out.loc[a, b] = out.loc[b, a] = est
            return out
        off = [r for r in rows if r[0] != r[1]]
        return pd.DataFrame(off, columns=["trait_1", "trait_2", "estimate", "std_error"])

    def residuals(self) -> pd.DataFrame:
        """Residuals y - X b - Z u, one row per record: row (position in the data), trait, y,
        fitted, residual (and, for a spatial residual, the section and lattice positions)."""
        return self._records()

    def fitted(self) -> pd.Series:
        """Fitted values X b + Z u, one per record (indexed like :meth:`residuals`)."""
        return self._records()["fitted"]

    def _records(self) -> pd.DataFrame:
        if self.residual_table is None:
            raise ModelError("this result holds no per-record table (written by an older mvreml)")
        return self.residual_table.copy()

    def variogram(self, max_lag: int | None = None) -> pd.DataFrame:
        """Sample variogram of the residuals of a spatial fit (Gilmour, Cullis & Verbyla 1997):
        lag per lattice dimension, gamma = mean of (e_i - e_j)^2 / 2 over plot pairs at that
        lag (absolute differences, within a section), and the number of pairs."""
        from .variogram import sample_variogram

        return sample_variogram(self._records(), max_lag)

    def predict_curve(self, term: str, x) -> pd.DataFrame:
        """Random curves of a random regression term at covariate values x (see
        :func:`mvreml.curves.predict_curve`): level, x, value, std_error."""
        from .curves import predict_curve

        return predict_curve(self, term, x)

    def blup(self, term: str) -> pd.DataFrame:
        """BLUPs of a random term (a copy): indexed by level, <trait>... then pev_<trait>..."""
        if term not in self.blups:
            raise TermError(term, self.blups, what="term with BLUPs")
        return self.blups[term].copy()

    def vpredict(self, expr):
        """A function of the variance components with its delta-method standard error.

        Parameters
        ----------
        expr : str, list of str or dict
            An expression (see :mod:`mvreml.vpredict` for names and operations), optionally
            labelled as in asreml, ``"h2 ~ V1 / (V1 + V2 + V3)"``; a list of such expressions;
            or a dict name -> expression.
            ``V<i>`` is row ``i`` of :attr:`varcomp` (the numbering ``summary()`` prints):
            mvreml's order, random terms as the formula writes them, then the residual.
            ASReml numbers components in its own order, so renumber an ASReml expression by
            the summary (or write the term names).

        Returns
        -------
        Series (estimate, std_error) named by the label, or by the expression when it has no
        label; for a list or dict, a DataFrame indexed by label / name.

        Raises
        ------
        ExpressionError
            An expression that cannot be evaluated (the message names the part at fault), a
            label that repeats another, or a dict expression labelled other than its key.

        Examples
        --------
        >>> res.vpredict("animal / (animal + units)")
        >>> res.vpredict("h2 ~ V1 / (V1 + V2 + V3)")
        >>> res.vpredict(["h2 ~ animal / (animal + `mother:byear` + units)", "VP ~ V1 + V2 + V3"])
        >>> res.vpredict({"r_A": "animal[bwt,tarsus] / sqrt(animal[bwt,bwt] * animal[tarsus,tarsus])"})
        """
        if isinstance(expr, (dict, list, tuple)):
            items = expr.items() if isinstance(expr, dict) else ((None, e) for e in expr)
            rows = {}
            for key, e in items:
                label, _ = split_label(e)
                if key is not None and label is not None and label != key:
                    raise ExpressionError(f"{e!r} is labelled {label!r} but given under the name {key!r}")
                name = key if key is not None else (label if label is not None else e)
                if name in rows:
                    raise ExpressionError(f"two expressions are named {name!r}")
                rows[name] = self._vpredict(e)
            return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "std_error"])
        est, err = self._vpredict(expr)
        label, _ = split_label(expr)
        return pd.Series({"estimate": est, "std_error": err}, name=expr if label is None else label)

    def _vpredict(self, expr: str) -> tuple[float, float]:
        d = evaluate(expr, self._index, self._x)
        return d.value, delta_se(d.grad, self.components_vcov)

    def heritability(self, term: str) -> pd.DataFrame:
        """Ratio of a term's variance to the sum of all variances of each trait.

        The denominator adds the (trait, trait) variance of every term covering the trait,
        residual included (``V_term / (V_1 + ... + V_units)``). Standard errors by the delta
        method.

        Returns
        -------
        DataFrame indexed by trait: estimate, std_error.
        """
        traits = self._term(term)
        rows = {}
        for t in traits:
            total = sum(self._element(u, t, t) for u, tt in self.term_traits.items() if t in tt)
            try:
                h = self._element(term, t, t) / total
            except ExpressionError:
                raise ExpressionError(f"the total variance of trait {t!r} is zero") from None
            rows[t] = (h.value, delta_se(h.grad, self.components_vcov))
        out = pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "std_error"])
        out.index.name = "trait"
        return out

    # ------------------------------------------------------------------ fixed effects
    def wald(self, den_df=None) -> pd.DataFrame:
        """Incremental and conditional Wald F tests of the fixed terms.

        Parameters
        ----------
        den_df : None, float, dict, "satterthwaite" or "kr"
            Denominator df; default N - p (see :mod:`mvreml.wald` for what that means).
            ``"satterthwaite"``: each term's Satterthwaite df (lmerTest's; see
            :mod:`mvreml.dendf`); ``"kr"``: Kenward-Roger df, with F from the adjusted
            covariance Phi_A (lmerTest / pbkrtest; see :mod:`mvreml.kenward_roger`: dense in the
            observations, structures linear in their parameters only). Computed for each
            term's conditional hypothesis (``denDF``, used by ``p_con``) and its incremental
            one (``denDF_inc``, used by ``p_inc``); both need the fitted model (not available
            on a Result read from JSON).

        Returns
        -------
        DataFrame by fixed term: df, denDF, F_inc, F_con, p_inc, p_con (and denDF_inc with
        ``den_df="satterthwaite"``).
        """
        if not isinstance(den_df, str):
            return wald_table(self.fixef, self.fixef_vcov, self.fixed_terms, self.n_obs,
                              self.rank_x, den_df)
        method = den_df.strip().lower()
        method = "kr" if method in ("kenward-roger", "kenward_roger") else method
        if method not in ("satterthwaite", "kr"):
            raise ModelError(f"den_df={den_df!r}: give a number, a dict term -> df, 'satterthwaite' or 'kr'")
        fitted = getattr(self, "_fitted", None)
        if fitted is None:
            raise ModelError(f"den_df={den_df!r} needs the fitted model, which a Result read from "
                             "JSON does not carry: refit with mvreml.fit")
        model, theta = fitted
        free = self.varcomp["bound"].isin(["P", "U"]).to_numpy()
        vcov = self.fixef_vcov
        from .backends import reopened

        if method == "satterthwaite":
            from .dendf import SatterthwaiteParts, wald_satterthwaite

            with reopened(model, f"wald(den_df={den_df!r})"):
                parts = SatterthwaiteParts(model, theta, free)
                inc, con = wald_satterthwaite(self.fixef, self.fixed_terms, parts)
        else:
            from .kenward_roger import KenwardRoger, wald_kenward_roger

            with reopened(model, f"wald(den_df={den_df!r})"):
                kr = KenwardRoger(model, theta, free)
                inc_s, con_s = wald_kenward_roger(self.fixef, self.fixed_terms, kr)
            vcov = kr.phi_adj            # the F statistics use the adjusted covariance
            inc = {t: v[0] for t, v in inc_s.items()}
            con = {t: v[0] for t, v in con_s.items()}
        out = wald_table(self.fixef, vcov, self.fixed_terms, self.n_obs, self.rank_x, con)
        if method == "kr":              # K&R's scaled statistics F* = lambda F
            out["F_inc"] = out["F_inc"] * np.array([inc_s[t][1] for t in out.index])
            out["F_con"] = out["F_con"] * np.array([con_s[t][1] for t in out.index])
            out["p_con"] = stats.f.sf(out["F_con"], out["df"], out["denDF"])
        den_inc = np.array([inc[t] for t in out.index])
        out.insert(2, "denDF_inc", den_inc)
        out["p_inc"] = stats.f.sf(out["F_inc"], out["df"], den_inc)
        return out

    def predict(self, L=None, *, classify=None, present=None, average=None, ignore=None, use=None,
                levels=None, sed: bool = False):
        """Predicted means by ``classify`` (asreml-R's rules), or fixed-effect combinations ``L b``.

        Parameters
        ----------
        L : array-like (k x p), DataFrame or Series, optional
            Coefficients of fixed-effect combinations; a DataFrame/Series has fixed-effect
            names as columns (others count as 0) and its index names the predictions.
        classify : str, optional
            The table to predict: ``"gen"``, ``"site:gen"``, ``"trait:gen"``. Fixed factors
            not in it are averaged with equal weights, covariates taken at their mean, random
            terms whose variables are all classified or averaged are included (BLUP-based
            predictions), other random terms are left out (see :mod:`mvreml.predict`).
        present, average, ignore, use, levels
            As asreml-R's predict (see :func:`mvreml.predict.classify_predictions`).
        sed : bool
            With ``classify``: also the SED matrix and avsed (returns a
            :class:`mvreml.predict.Predictions`).

        Returns
        -------
        DataFrame: with ``L``, estimate and std_error; with ``classify``, the classify
        columns, predicted_value, std_error and status (estimable / not estimable and why).

        Raises
        ------
        ModelError
            ``classify=`` on a Result read back from JSON: predictions need the fitted model;
            after a MUMPS fit on several MPI ranks, outside ``mvreml.backends.collective``
            (the ranks are needed again: see :func:`mvreml.backends.reopened`).

        Examples
        --------
        >>> res.predict(classify="loc:gen")
        >>> res.predict(pd.DataFrame({"(Intercept)": [1, 1], "sex_2": [0, 1]}, index=["F", "M"]))
        """
        if classify is None:
            if L is None:
                raise ModelError("predict needs classify= (e.g. 'gen') or a matrix L of fixed-effect coefficients")
            return linear_combination(L, self.fixef, self.fixef_vcov)
        if L is not None:
            raise ModelError("give either L or classify=, not both")
        fitted = getattr(self, "_fitted", None)
        if fitted is None:
            raise ModelError("predict(classify=...) needs the fitted model (its design and the factor of "
                             "the mixed-model equations), which a Result read from JSON does not carry: "
                             "refit with mvreml.fit to predict")
        from .backends import reopened
        from .predict import classify_predictions

        model, theta = fitted
        with reopened(model, "predict(classify=...)"):      # a MUMPS fit's instance ended with it
            return classify_predictions(model, theta, classify, present=present, average=average,
                                        ignore=ignore, use=use, levels=levels, sed=sed)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> "_summary.Summary":
        """An asreml-R-like summary; prints as text, renders as HTML in notebooks."""
        return _summary.Summary(self)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        return (f"<mvreml.Result {', '.join(self.traits)}: logLik {self.loglik:.3f}, "
                f"{self.n_varparams} variance parameters, {state}>")

    def to_json(self, indent: int | None = None) -> str:
        """Every field as standard JSON (no NaN tokens); read back with :meth:`from_json`."""
        body = {f.name: _summary.encode(getattr(self, f.name)) for f in fields(self)}
        return json.dumps({"format": _summary.FORMAT, "version": 1, "result": body},
                          indent=indent, allow_nan=False, default=_summary.json_default)

    @classmethod
    def from_json(cls, text: str) -> "Result":
        """Rebuild a Result written by :meth:`to_json`."""
        try:
            doc = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ModelError(f"not a JSON document: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != _summary.FORMAT:
            raise ModelError(f"not an mvreml result (expected format {_summary.FORMAT!r})")
        body = doc["result"]
        optional = {"residual_table"}          # absent from results written before it existed
        missing = [f.name for f in fields(cls) if f.name not in body and f.name not in optional]
        if missing:
            raise ModelError(f"the JSON result lacks fields {missing}")
        return cls(**{f.name: _summary.decode(body[f.name]) for f in fields(cls) if f.name in body})


def _get_fixef_vcov(self) -> np.ndarray | None:
    pending = self.__dict__.get("_fixef_vcov_pending")
    if pending is not None:
        # computed on first access (build_result leaves the p solves to whoever asks), from the
        # fitted model at the estimates: the numbers an eager computation gives
        self.__dict__["_fixef_vcov_pending"] = None
        V = pending()
        self.__dict__["_fixef_vcov"] = None if V is None else np.asarray(V, dtype=float)
    return self.__dict__.get("_fixef_vcov")


def _set_fixef_vcov(self, value) -> None:
    self.__dict__["_fixef_vcov_pending"] = None
    self.__dict__["_fixef_vcov"] = value


# a property on the dataclass field: the field stays in __init__, fields() and JSON, its value lazy
Result.fixef_vcov = property(_get_fixef_vcov, _set_fixef_vcov, doc="The fixed effects' covariance (X'V^-1X)^-1 "
                             "(None if not kept); computed on first access for a Result from a fit.")

from ._lrt import LRT, lrt  # noqa: E402,F401  (public here too: mvreml.results.lrt)
