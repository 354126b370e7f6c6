"""Predicted means by ``classify``, asreml-R's rules (Welham, Cullis, Gogel, Gilmour & Thompson 2004).

A prediction is a linear function L'[b; u] of the fixed and random effects. asreml-R builds it
in three steps, and so does :func:`classify_predictions`:

1. the *classify set*: the variables whose level combinations are predicted ("gen",
   "site:gen", "trait:gen");
2. the *averaging set*: the variables of the fixed terms that are not in the classify set,
   plus those named in ``average=`` / ``present=``; factors are averaged over their levels
   with equal weights (or over the combinations present in the data, ``present=``), simple
   covariates are taken at their mean over the data used;
3. the *terms used*: every fixed term, and every random term whose variables all lie in the
   classify and averaging sets (``gen:site`` BLUPs enter a site-by-genotype table, ``fa(site,
   2):gen`` too); ``use=`` adds terms, ``ignore=`` removes them. Variables that appear only in
   random terms are ignored unless named in ``average=`` (asreml's rule), so ``at(loc):rowf``
   is left out of a ``loc:gen`` table.

The hypertable of classify x averaging combinations is built as new data for the fitted
formulaic model specs (so treatment contrasts, ``C()`` and stateful transforms mean what they
meant in the fit) and averaged into L. A prediction is estimable when its fixed part lies in
the row space of X: it must not load on the null space that the aliased (dropped) columns
span; if it does, it is reported as not estimable with the aliased columns named, never
averaged over what the data cannot tell.

Prediction error variances are L' C^-1 L, by solves with the Cholesky factor of the
mixed-model equations at the reported theta (never a dense C^-1); ``sed=True`` gives the
standard errors of all pairwise differences.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import ArgumentError, ModelError, TermError

__all__ = ["Predictions", "classify_predictions"]

_TOKEN = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_MAX_GRID = 5_000_000      # rows of the classify x averaging hypertable built at once
_CHUNK = 64                # right-hand sides per solve with the factor
_MAX_SED = 20_000          # predictions whose full SED matrix is built


@dataclass
class Predictions:
    """What ``predict(classify=..., sed=True)`` returns (asreml-R's ``pvals``, ``sed``, ``avsed``).

    Attributes
    ----------
    pvals : DataFrame
        The classify columns, predicted_value, std_error, status.
    sed : DataFrame
        Standard errors of differences between the predictions (NaN for a prediction that is
        not estimable), labelled by the classify combinations.
    avsed : Series
        mean, min, max of the SEDs of distinct estimable pairs.
    """

    pvals: pd.DataFrame
    sed: pd.DataFrame
    avsed: pd.Series


def _names(value, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return list(value)
    try:
        return [str(v) for v in value]
    except TypeError:
        raise ArgumentError(f"{what}= takes a name or a list of names, not {type(value).__name__}",
                            argument=what) from None


def _parse_classify(classify) -> list:
    if isinstance(classify, str):
        text = classify.strip()
        if text in ("(Intercept)", "1", ""):
            return []
        parts = [p.strip() for p in text.split(":")]
    elif isinstance(classify, (list, tuple)):
        parts = [str(p).strip() for p in classify]
    else:
        raise ArgumentError(f"classify= takes a string such as 'site:gen', not {type(classify).__name__}",
                            argument="classify")
    if any(not p for p in parts) or len(set(parts)) != len(parts):
        raise ArgumentError(f"classify={classify!r}: give distinct variable names separated by ':'",
                            argument="classify")
    return parts


# ---------------------------------------------------------------------- the model's variables
def _spec_variables(spec, columns) -> tuple[set, set]:
    """(categorical, numeric) data columns of one formulaic model spec."""
    cat, num = set(), set()
    for term in spec.terms:
        for factor in term.factors:
            names = {t for t in _TOKEN.findall(str(factor.expr)) if t in columns}
            kind = spec.encoder_state.get(str(factor.expr), (None,))[0]
            (cat if kind is not None and str(getattr(kind, "value", kind)) == "categorical" else num).update(names)
    return cat, num


def _random_variables(rd, multivariate: bool) -> dict:
    """The variables of a random term by role: factors (level labels), covariates, structured
    dimensions, at() columns, bases."""
    term = rd.term
    dims = [d.column for d in term.dims if d.basis is None]
    bases = [d.column for d in term.dims if d.basis is not None]
    return dict(factors=[c for c in term.factors], dims=dims, at=[a.column for a in term.at],
                bases=bases, trait=multivariate)


class _Model:
    """The fitted model's variables, terms and encodings, as predictions need them."""

    def __init__(self, design):
        fm = design.fixed_model
        if not fm or "blocks" not in fm:
            raise ModelError("this fit carries no fixed-model specification; predictions need a model "
                             "fitted by mvreml.fit")
        self.d = design
        self.fm = fm
        self.sub = fm["data"]
        self.multivariate = len(design.traits) > 1
        cols = set(self.sub.columns)
        self.fixed_cat, self.fixed_num = set(), set()
        for block in fm["blocks"]:
            c, n = _spec_variables(block["spec"], cols)
            self.fixed_cat |= c
            self.fixed_num |= n
        self.fixed_num -= self.fixed_cat
        self.fixed_vars = self.fixed_cat | self.fixed_num
        if self.multivariate:
            self.fixed_vars.add("trait")
        self.fixed_terms = list(dict.fromkeys(o for b in fm["blocks"] for o in b["owners"]))
        self.random = []
        for rd in design.random:
            roles = _random_variables(rd, self.multivariate)
            covs = _covariates(self.sub, rd)
            allv = set(roles["factors"]) | set(roles["dims"]) | set(roles["at"]) | set(roles["bases"])
            if roles["trait"]:
                allv.add("trait")
            self.random.append((rd, roles, covs, allv))
        self.random_vars = set().union(*(r[3] for r in self.random)) if self.random else set()
        self.known = self.fixed_vars | self.random_vars - {"units"}

    def is_covariate(self, v: str) -> bool:
        if v == "trait":
            return False
        if v in self.fixed_num:
            return True
        return any(v in covs for _, _, covs, _ in self.random)

    def levels(self, v: str) -> tuple[list, dict]:
        """(labels in asreml's order, label -> a data value with that label) of a factor."""
        if v == "trait":
            return list(self.d.traits), {t: t for t in self.d.traits}
        from .design import factor_labels
        from .levels import ordered_levels

        order, _ = ordered_levels(self.sub, v, f"predict classify {v!r}")
        labels = factor_labels(self.sub, [v]).astype(str)
        first = pd.Series(self.sub[v].to_numpy()).groupby(labels, sort=False).first()
        return list(order), first.to_dict()


def _covariates(sub, rd) -> tuple:
    from .design import _covariate_factors

    return _covariate_factors(sub, rd.term) if len(rd.term.factors) > 1 else ()


# ---------------------------------------------------------------------- the hypertable
def _grid(m: _Model, classify, avg_factors, present, weights, levels_opt):
    """The classify x averaging hypertable: per variable the label of every grid row, the
    prediction each row belongs to, its averaging weight; and the classify combinations."""
    lv = {}
    for v in set(classify) | set(avg_factors):
        order, value = m.levels(v)
        if v in levels_opt:
            want = [str(x) for x in levels_opt[v]]
            bad = [x for x in want if x not in value]
            if bad:
                raise ArgumentError(f"levels= for {v!r}: {bad} are not levels of {v!r} "
                                    f"(its levels: {', '.join(order[:20])})", argument="levels")
            order = want
        lv[v] = order
    combos = list(itertools.product(*(lv[v] for v in classify))) if classify else [()]
    pres = [v for v in present if v not in classify]
    pres_cls = [v for v in present if v in classify]
    other = [v for v in avg_factors if v not in present]
    # the present combinations, by the classify variables they share
    allowed = {}
    if present:
        from .design import factor_labels

        lab = pd.DataFrame({v: factor_labels(m.sub, [v]).astype(str) for v in present})
        lab = lab.drop_duplicates()
        for key, g in lab.groupby(pres_cls, sort=False) if pres_cls else [((), lab)]:
            key = key if isinstance(key, tuple) else (key,)
            rows = [tuple(r) for r in g[pres].itertuples(index=False)]
            allowed[tuple(key)] = [r for r in rows if all(x in lv[v] for x, v in zip(r, pres))]
    o_levels = [lv[v] for v in other]
    o_weights = [np.asarray(weights[v], float) if v in weights else np.full(len(lv[v]), 1.0 / len(lv[v]))
                 for v in other]
    o_combos = list(itertools.product(*[range(len(x)) for x in o_levels]))
    o_w = np.array([np.prod([w[i] for w, i in zip(o_weights, c)]) for c in o_combos]) if other else np.ones(1)
    pred, w, cells = [], [], {v: [] for v in list(classify) + pres + other}
    for i, combo in enumerate(combos):
        key = tuple(combo[classify.index(v)] for v in pres_cls)
        p_rows = allowed.get(key, []) if present else [()]
        if not p_rows:
            continue
        n_rows = len(p_rows) * len(o_combos)
        if len(pred) + n_rows > _MAX_GRID:
            raise ArgumentError(f"the classify x averaging table has more than {_MAX_GRID} rows: classify "
                                f"fewer variables, or average over fewer (present=, ignore=)", argument="classify")
        for p in p_rows:
            for oc, ow in zip(o_combos if other else [()], o_w):
                pred.append(i)
                w.append(ow / len(p_rows))
                for v, x in zip(classify, combo):
                    cells[v].append(x)
                for v, x in zip(pres, p):
                    cells[v].append(x)
                for v, levels, j in zip(other, o_levels, oc):
                    cells[v].append(levels[j])
    cells = {v: np.array(x, dtype=object) for v, x in cells.items()}
    return combos, np.array(pred, np.int64), np.array(w, float), cells


def _fixed_rows(m: _Model, cells, n_grid, ignore) -> np.ndarray:
    """Rows of the full (pre-rank-check) X at the grid points: G x n_full."""
    fm = m.fm
    traits = list(m.d.traits)
    tcol = cells.get("trait")
    trait_idx = (np.array([traits.index(t) for t in tcol], np.int64) if tcol is not None
                 else np.zeros(n_grid, np.int64))
    values = {}
    for v in m.fixed_vars - {"trait"}:
        if v in cells:
            _, first = m.levels(v)
            values[v] = pd.Series([first[x] for x in cells[v]], dtype=m.sub[v].dtype
                                  if not isinstance(m.sub[v].dtype, pd.CategoricalDtype) else object)
        elif m.is_covariate(v):
            values[v] = np.full(n_grid, float(np.mean(m.sub[v].to_numpy(dtype=float))))
        else:
            raise ModelError(f"internal: fixed variable {v!r} is neither classified, averaged nor a covariate")
    grid = pd.DataFrame(values, index=pd.RangeIndex(n_grid))
    for v in m.sub.columns:
        if v not in grid.columns:
            grid[v] = m.sub[v].iloc[0]       # unused by the fixed formula; formulaic may look it up
    parts = []
    for block in fm["blocks"]:
        mm = block["spec"].get_model_matrix(grid, output="sparse", na_action="ignore")
        M = sp.csr_matrix(mm)[:, block["cols"]]
        on = np.isin(trait_idx, block["traits"]).astype(float)
        M = sp.diags(on) @ M
        off = [j for j, o in enumerate(block["owners"]) if o in ignore]
        if off:
            M = M.tolil()
            M[:, off] = 0.0
        parts.append(sp.csr_matrix(M))
    if not parts:
        return sp.csr_matrix((n_grid, 0))
    return sp.hstack(parts, format="csr")


def _random_rows(m: _Model, rd, roles, covs, cells, n_grid, means) -> sp.csr_matrix:
    """Z of one random term at the grid points (G x q t): level x compound, at() respected."""
    fac = [c for c in roles["factors"] if c not in covs]
    ok = np.ones(n_grid, bool)
    for a in rd.term.at:
        ok &= cells[a.column] == a.levels[0][0]
    labels = cells[fac[0]].astype(str)
    for c in fac[1:]:
        labels = np.char.add(np.char.add(labels.astype(str), ":"), cells[c].astype(str))
    level = pd.Index(np.asarray(rd.levels).astype(str)).get_indexer(np.asarray(labels, dtype=str))
    ok &= level >= 0
    comp = np.zeros(n_grid, np.int64)
    dims = rd.dims if rd.dims else [("trait", tuple(m.d.traits[i] for i in rd.traits))]
    for name, lv in dims:
        if name == "trait" and "trait" not in cells:     # univariate: the one trait
            code = np.zeros(n_grid, np.int64)
        else:
            code = pd.Index(list(lv)).get_indexer(cells[name].astype(str))
        ok &= code >= 0
        comp = comp * len(lv) + code
    val = np.ones(n_grid)
    for c in covs:
        val = val * means[c]
    rows = np.flatnonzero(ok)
    return sp.csr_matrix((val[rows], (rows, level[rows] * rd.t + comp[rows])), shape=(n_grid, rd.q * rd.t))


def _aliasing(m: _Model, L_full):
    """Per prediction: None if estimable, else the aliased columns it loads on."""
    fm = m.fm
    keep, dropped = fm["keep"], fm["dropped"]
    k = L_full.shape[0]
    if not dropped:
        return [None] * k
    Xk = sp.csc_matrix(m.d.X[:, :len(keep)])
    Xd = fm["dropped_X"]
    # dropped column j = X_kept a_j (+ 0 when j is aliased); the null space of the full X is
    # spanned by e_j - a_j, and L'b is estimable iff L is orthogonal to it
    xtx = (Xk.T @ Xk).toarray()
    A = np.linalg.solve(xtx, (Xk.T @ Xd).toarray()) if len(keep) else np.zeros((0, len(dropped)))
    L_full = sp.csr_matrix(L_full)
    check = L_full[:, dropped].toarray() - np.asarray(L_full[:, keep] @ A)
    scale = 1.0 + np.asarray(abs(L_full).max(axis=1).toarray()).ravel()
    out = []
    names = fm["names"]
    for i in range(k):
        bad = np.flatnonzero(np.abs(check[i]) > 1e-8 * scale[i])
        out.append(None if bad.size == 0 else [names[dropped[j]] for j in bad])
    return out


# ---------------------------------------------------------------------- the predictions
def classify_predictions(model, theta, classify, *, present=None, average=None, ignore=None, use=None,
                         levels=None, sed=False):
    """Predicted values of the classify table with prediction standard errors (and SEDs).

    Parameters
    ----------
    model : mvreml.likelihood.REMLModel
        The fitted model (design and factor).
    theta : ndarray
        The reported variance parameters; the factor is brought to them before any solve.
    classify : str
        Variables separated by ":" ("gen", "site:gen", "trait:gen"); "(Intercept)" for the
        overall mean.
    present : list of str, optional
        Variables averaged over the combinations present in the data only (equal weights per
        present combination); may include classify variables (nested factors).
    average : list of str or dict, optional
        Variables added to the averaging set (e.g. a factor only in random terms); a dict maps
        a variable to its averaging weights (one per level, in level order, summing to 1).
    ignore, use : list of str, optional
        Term names left out of / added to the prediction (fixed labels such as "loc:gen",
        random term names such as "gen:site" or "at(loc, Clemson):rowf").
    levels : dict, optional
        Classify variable -> the levels to predict (default: all levels in the data).
    sed : bool
        Also return the SED matrix and avsed.

    Returns
    -------
    DataFrame (classify columns, predicted_value, std_error, status), or :class:`Predictions`
    when ``sed`` is True.

    Raises
    ------
    ArgumentError
        A classify / averaging variable that is not in the model (the message names it and
        lists the model's variables), a covariate in classify, weights that do not fit.
    TermError
        ``ignore=`` / ``use=`` naming a term the model does not have.
    """
    m = _Model(model.design)
    cls = _parse_classify(classify)
    present = _names(present, "present")
    avg = _names(average, "average")
    ignore = set(_names(ignore, "ignore"))
    use = set(_names(use, "use"))
    levels = dict(levels or {})
    for what, names in (("classify", cls), ("present", present), ("average", avg), ("levels", list(levels))):
        for v in names:
            if v not in m.known:
                raise ArgumentError(f"{what}= names {v!r}, which is not a variable of the model "
                                    f"(its variables: {', '.join(sorted(m.known))})", argument=what)
    stray = [v for v in levels if v not in cls]
    if stray:
        raise ArgumentError(f"levels= names {stray}, which are not in classify={classify!r}", argument="levels")
    for v in cls + avg + present:
        if m.is_covariate(v) and v not in m.fixed_cat:
            raise ArgumentError(f"{v!r} is a covariate: predictions take it at its mean; classify / "
                                f"average over factors only", argument="classify")
    if set(avg) & set(present):
        raise ArgumentError(f"{sorted(set(avg) & set(present))} are both in average= and present=",
                            argument="present")
    random_names = {rd.name: i for i, (rd, _, _, _) in enumerate(m.random)}
    random_labels = {rd.term.label: rd.name for rd, _, _, _ in m.random}
    known_terms = list(m.fixed_terms) + list(random_names)

    def term_name(t):
        if t in random_names or t in m.fixed_terms:
            return t
        if t in random_labels:
            return random_labels[t]
        raise TermError(t, known_terms)
    ignore = {term_name(t) for t in ignore}
    use = {term_name(t) for t in use}
    weights = {}
    if isinstance(average, dict):
        for v, w in average.items():
            if w is None:
                continue
            w = np.asarray(w, float)
            n = len(m.levels(v)[0])
            if w.shape != (n,) or not np.isfinite(w).all() or abs(w.sum() - 1.0) > 1e-9:
                raise ArgumentError(f"average= weights for {v!r}: give {n} finite weights (one per level, "
                                    f"in level order) that sum to 1, got {w.tolist()}", argument="average")
            weights[v] = w
    # the averaging set: fixed variables not classified, and those named; then the terms used
    aset = (m.fixed_vars - set(cls)) | set(avg) | (set(present) - set(cls))
    for name in use & set(random_names):
        aset |= m.random[random_names[name]][3] - set(cls)
    used_random = []
    for rd, roles, covs, allv in m.random:
        if rd.name in ignore or "units" in roles["factors"]:
            continue
        if rd.name in use or allv <= set(cls) | aset:
            if roles["bases"]:
                if rd.name in use:
                    raise ArgumentError(f"random regression term {rd.name!r} cannot enter a classify "
                                        f"prediction; use res.predict_curve()", argument="use")
                continue
            used_random.append((rd, roles, covs))
    avg_factors = sorted(v for v in aset if not m.is_covariate(v) or v in m.fixed_cat)
    combos, pred, w, cells = _grid(m, cls, avg_factors, present, weights, levels)
    k, G = len(combos), len(pred)
    Aw = sp.csr_matrix((w, (pred, np.arange(G))), shape=(k, G))
    covariate_means = {v: float(np.mean(m.sub[v].to_numpy(dtype=float)))
                       for v in m.sub.columns if m.is_covariate(v)}
    L_full = Aw @ _fixed_rows(m, cells, G, ignore)
    alias = _aliasing(m, L_full)
    d = model.design
    pat = model.pattern
    blocks = [sp.csr_matrix(L_full[:, m.fm["keep"]])]
    if d.p > len(m.fm["keep"]):       # missing plots' mv columns: no part of a prediction
        blocks.append(sp.csr_matrix((k, d.p - len(m.fm["keep"]))))
    used_names = {rd.name for rd, _, _ in used_random}
    for rd, off in zip(d.random, pat.offsets):
        if rd.name in used_names:
            roles, covs = next((r, c) for x, r, c in used_random if x is rd)
            blocks.append(Aw @ _random_rows(m, rd, roles, covs, cells, G, covariate_means))
        else:
            blocks.append(sp.csr_matrix((k, rd.q * rd.t)))
    L = sp.csr_matrix(sp.hstack(blocks, format="csr"))
    has_row = np.bincount(pred, minlength=k) > 0
    status = []
    for i in range(k):
        if not has_row[i]:
            status.append("not estimable: no present combination to average over")
        elif alias[i] is not None:
            shown = ", ".join(alias[i][:5]) + (" ..." if len(alias[i]) > 5 else "")
            status.append(f"not estimable: aliased with {shown}")
        else:
            status.append("estimable")
    est = np.flatnonzero([s == "estimable" for s in status])
    ev = model.evaluate(np.asarray(theta, float), derivatives=False)    # factor and solution at theta
    values = np.full(k, np.nan)
    values[est] = L[est] @ ev.solution
    Le = sp.csr_matrix(L[est])
    if sed and len(est) > _MAX_SED:
        raise ArgumentError(f"sed=True for {len(est)} predictions would hold a {len(est)} x {len(est)} "
                            f"matrix; ask for at most {_MAX_SED} (levels=, a smaller classify)", argument="sed")
    V = np.zeros((len(est), len(est))) if sed else None
    var = np.zeros(len(est))
    # C^-1 L by solves with the factor, a block of right-hand sides at a time (P x _CHUNK dense)
    for s in range(0, len(est), _CHUNK):
        part = Le[s:s + _CHUNK]
        X = np.asarray(model.factor(part.T.toarray()))
        if sed:
            V[:, s:s + _CHUNK] = Le @ X
        var[s:s + _CHUNK] = np.asarray(part.multiply(X.T).sum(axis=1)).ravel()
    se = np.full(k, np.nan)
    se[est] = np.sqrt(np.clip(var, 0.0, None))
    out = pd.DataFrame({v: [c[j] for c in combos] for j, v in enumerate(cls)})
    if not cls:
        out = pd.DataFrame({"(Intercept)": ["mean"]})
    out["predicted_value"] = values
    out["std_error"] = se
    out["status"] = status
    out.attrs["averaged"] = avg_factors
    out.attrs["covariates_at_mean"] = sorted(v for v in aset if v in covariate_means and v not in m.fixed_cat)
    out.attrs["terms"] = [t for t in m.fixed_terms if t not in ignore] + sorted(used_names)
    if not sed:
        return out
    V = 0.5 * (V + V.T)
    names = [":".join(map(str, c)) if c else "mean" for c in combos]
    S = np.full((k, k), np.nan)
    dv = np.diag(V)
    S[np.ix_(est, est)] = np.sqrt(np.clip(dv[:, None] + dv[None, :] - 2.0 * V, 0.0, None))
    np.fill_diagonal(S, np.nan)
    sed_df = pd.DataFrame(S, index=pd.Index(names), columns=pd.Index(names))
    iu = np.triu_indices(len(est), 1)
    pairs = S[np.ix_(est, est)][iu]
    avsed = pd.Series({"mean": float(np.mean(pairs)) if pairs.size else np.nan,
                       "min": float(np.min(pairs)) if pairs.size else np.nan,
                       "max": float(np.max(pairs)) if pairs.size else np.nan}, name="avsed")
    return Predictions(pvals=out, sed=sed_df, avsed=avsed)
