"""Starting values: user values (``init=``), the default split of the phenotypic (co)variance
among the terms, and ``init="pairwise"`` (univariate and bivariate sub-model fits combined).

The default gives every term a share of the phenotypic covariance matrix P of the traits
(residuals after the fixed effects, pairwise-complete): half to the residual and half split
evenly among the random terms, covariances included, so every starting matrix has the
phenotypic correlations and is positive definite. ``scale`` (a typical magnitude of each
parameter, from P) sets the boundary values and relative steps of the iteration.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from .design import Design
from .diagnose import duplicate_traits
from .errors import ModelError, MvremlError, StartingValueError
from .formula import FixedSpec, Response, VarianceSpec
from .structures import nearest_pd

_MAX_START_COR = 0.95      # |correlation| of a starting matrix at most this
_MIN_START_PSI = 0.1       # fa: a default starting specific variance at least this share of its variance


def unit_residuals(design: Design) -> np.ndarray:
    """Residuals after the fixed effects (least squares), n_units x t, NaN where missing."""
    import scipy.sparse.linalg as spla

    X = design.X
    r = design.y
    if X.shape[1]:
        b = spla.lsqr(X, design.y, atol=1e-12, btol=1e-12, iter_lim=2 * X.shape[1] + 100)[0]
        r = design.y - X @ b
    Y = np.full((design.n_units, design.t), np.nan)
    Y[design.obs_unit, design.obs_trait] = r
    return Y


def phenotypic_covariance(design: Design, Y: np.ndarray | None = None) -> np.ndarray:
    """Positive definite phenotypic covariance of the traits (pairwise-complete residuals).

    Variances that cannot be computed fall back to the variance of y; correlations that
    cannot be computed (traits never observed together) are 0; the correlation matrix is
    made positive definite with eigenvalues >= 0.05 and |r| <= 0.95.
    """
    Y = unit_residuals(design) if Y is None else Y
    t = design.t
    v = np.ones(t)
    for j in range(t):
        col = Y[~np.isnan(Y[:, j]), j]
        vj = float(np.var(col)) if len(col) > 1 else 0.0
        if not (np.isfinite(vj) and vj > 0):
            yj = design.y[design.obs_trait == j]
            vj = float(np.var(yj)) if len(yj) > 1 else 0.0
        v[j] = vj if np.isfinite(vj) and vj > 0 else 1.0
    R = np.eye(t)
    for a, b in itertools.combinations(range(t), 2):
        both = ~np.isnan(Y[:, a]) & ~np.isnan(Y[:, b])
        if both.sum() > 2:
            x, y = Y[both, a] - Y[both, a].mean(), Y[both, b] - Y[both, b].mean()
            den = np.sqrt((x @ x) * (y @ y))
            if den > 0:
                R[a, b] = R[b, a] = float(x @ y / den)
    sd = np.sqrt(v)
    return _tidy_correlation(R, 0.05) * np.outer(sd, sd)


def _tidy_correlation(R: np.ndarray, floor: float) -> np.ndarray:
    """A correlation matrix made positive definite (eigenvalues >= floor) with |r| <= 0.95."""
    R = nearest_pd(np.nan_to_num(R), floor)[0]
    s = np.sqrt(np.diag(R))
    R = R / np.outer(s, s)
    off = np.max(np.abs(R - np.eye(len(R))), initial=0.0)
    if off > _MAX_START_COR:
        R = np.eye(len(R)) + (R - np.eye(len(R))) * (_MAX_START_COR / off)
    return R


def check_traits(design: Design, Y: np.ndarray) -> None:
    """Refuse responses that are exact copies (or exact combinations) of one another."""
    found = duplicate_traits(Y, list(design.traits))
    if found is not None:
        raise ModelError(found[1])


def as_matrix(value, traits, term) -> np.ndarray:
    """A user starting value (number, array or trait-labelled DataFrame) as a PD t x t matrix."""
    t = len(traits)
    if isinstance(value, pd.DataFrame):
        missing = [x for x in traits if x not in value.index or x not in value.columns]
        if missing:
            raise StartingValueError(f"init for {term!r} lacks traits {missing} (it has {list(value.index)})",
                                     term=term)
        M = value.loc[list(traits), list(traits)].to_numpy(dtype=float)
    elif np.isscalar(value):
        if isinstance(value, str):
            raise StartingValueError(f"init for {term!r} is the string {value!r}; give a number or matrix",
                                     term=term)
        if t != 1:
            raise StartingValueError(f"init for {term!r} is a number but the term covers {t} traits: "
                                     f"give a {t} x {t} matrix", term=term)
        M = np.array([[float(value)]])
    else:
        M = np.asarray(value, dtype=float)
        if M.ndim == 1 and M.size == 1:
            M = M.reshape(1, 1)
        if M.shape != (t, t):
            raise StartingValueError(f"init for {term!r} has shape {M.shape}, expected ({t}, {t}) for "
                                     f"traits {list(traits)}", term=term)
    if not np.all(np.isfinite(M)):
        raise StartingValueError(f"init for {term!r} has non-finite values", term=term)
    if not np.allclose(M, M.T, rtol=1e-8, atol=0):
        raise StartingValueError(f"init for {term!r} is not symmetric", term=term)
    try:
        np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        ev = np.linalg.eigvalsh(M)
        raise StartingValueError(f"init for {term!r} is not positive definite (smallest eigenvalue "
                                 f"{ev.min():.3g})", term=term) from None
    return M


def starting_values(design: Design, blocks, init, P: np.ndarray, Y: np.ndarray | None = None):
    """theta0 and per-parameter scales.

    Parameters
    ----------
    design : Design
    blocks : list of ParamBlock
    init : dict or None
        Term name -> starting value (see :func:`as_matrix`); terms not named start from
        their formula ``init=c(...)`` if any, else from their share of P.
    P : ndarray
        Phenotypic covariance (:func:`phenotypic_covariance`).
    Y : ndarray, optional
        The units' fixed-effect residuals (:func:`unit_residuals`), when the caller has them.
    """
    init = dict(init or {})
    names = {b.name for b in blocks} | {"units"}
    unknown = [k for k in init if k not in names]
    if unknown:
        raise StartingValueError(f"init names terms {unknown} that are not in the model "
                                 f"(terms: {sorted(names)})", term=unknown[0])
    n_res = sum(b.k is None for b in blocks)
    n_rand = len(blocks) - n_res
    theta = np.zeros(blocks[-1].stop)
    scale = np.zeros(blocks[-1].stop)
    if Y is None and (design.sections or any(rd.dims for rd in design.random)):
        Y = unit_residuals(design)      # one least-squares solve for every term and section
    for b in blocks:
        resid = b.k is None
        if b.stop == b.start:
            continue
        share = (0.5 if n_rand else 1.0) if resid else 0.5 / n_rand
        key = b.name if b.name in init else ("units" if resid and "units" in init else None)
        formula_init = _formula_init(design, b)
        if resid or not design.random[b.k].dims:
            idx = np.arange(design.t) if resid else design.random[b.k].traits
            Pb = P
            if resid and b.section is not None:
                # each residual section starts from its own records' phenotypic covariance
                Pb = phenotypic_covariance(design, Y[design.unit_section == b.section])
            traits = tuple(design.traits[i] for i in idx)
            G0 = share * Pb[np.ix_(idx, idx)]
            vd = np.diag(Pb)[idx]
        else:
            traits = tuple(design.random[b.k].comp_labels)
            G0, vd = _compound_start(design, design.random[b.k], b.structure, P, share, Y)
        if key is not None:
            th = np.asarray(b.structure.from_matrix(as_matrix(init[key], traits, b.name)), float)
        elif formula_init is not None:
            th = np.asarray(formula_init, float)
            if th.shape != (b.stop - b.start,):
                raise StartingValueError(f"init=c(...) of {b.name!r} has {th.size} values; "
                                         f"{b.structure} needs {b.stop - b.start}", term=b.name)
        else:
            th = np.asarray(b.structure.from_matrix(G0), float)
            if b.structure.name == "fa":
                # a default start never has a specific variance at (or near) zero: the step
                # control would hold it there before the data have had a say
                psi = th[-b.structure.t:]
                th[-b.structure.t:] = np.maximum(psi, _MIN_START_PSI * np.diag(G0))
        if not b.structure.feasible(th):
            raise StartingValueError(f"starting values of {b.name!r} are outside the parameter space of "
                                     f"{b.structure} (not positive definite)", term=b.name)
        theta[b.slice] = th
        scale[b.slice] = _scales(b.structure, vd)
    return theta, scale


#: starting correlation between the levels of a structured factor (sites): a common, moderate
#: value gives fa loadings and us covariances room to move either way
_START_LEVEL_COR = 0.3


def _dim_code(rd, dim: int):
    """(sizes of the term's dimensions, the level of dimension ``dim`` of every Z entry)."""
    sizes = [len(lv) for _, lv in rd.dims]
    comp = rd.obs_cols % rd.t
    return sizes, (comp // int(np.prod(sizes[dim + 1:]))) % sizes[dim]


def _level_matrix(design: Design, rd, dim: int, P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Starting matrix of a structured factor (site): relative variances from the records of
    each level (fixed-effect residuals, each trait on its phenotypic scale), mean 1, with a
    common correlation."""
    sizes, code = _dim_code(rd, dim)
    obs = rd.obs_rows
    z = Y[design.obs_unit[obs], design.obs_trait[obs]] / np.sqrt(np.diag(P)[design.obs_trait[obs]])
    ok = np.isfinite(z)
    n = np.bincount(code[ok], minlength=sizes[dim])
    ss = np.bincount(code[ok], weights=z[ok] ** 2, minlength=sizes[dim])
    r = np.where(n > 1, ss / np.maximum(n, 1), np.nan)
    r = np.where(np.isfinite(r) & (r > 0), r, np.nanmean(r) if np.isfinite(r).any() else 1.0)
    r = np.clip(r / np.mean(r), 0.05, 20.0)
    sd = np.sqrt(r)
    R = _level_correlation(rd.obs_cols // rd.t, code, z, ok, rd.q, sizes[dim])
    return R * np.outer(sd, sd)


def _level_correlation(level, code, z, ok, q: int, m: int) -> np.ndarray:
    """Starting correlations between the levels of a structured factor (sites): those of the
    term's level means (genotype means per site) across the levels of the term, shrunk
    halfway to a common 0.3 and made positive definite. A common correlation alone would
    start fa(k >= 2) on a one-factor matrix, where the later factors' loadings are 0 and log L
    is flat along them; the means give each site its own pattern."""
    R = np.full((m, m), _START_LEVEL_COR)
    np.fill_diagonal(R, 1.0)
    if m < 2 or q < 3:
        return R
    key = level[ok] * m + code[ok]
    n = np.bincount(key, minlength=q * m).reshape(q, m)
    tot = np.bincount(key, weights=z[ok], minlength=q * m).reshape(q, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = pd.DataFrame(np.where(n > 0, tot / np.maximum(n, 1), np.nan))
    C = means.corr(min_periods=3).to_numpy()
    C = np.where(np.isfinite(C), C, _START_LEVEL_COR)
    C = 0.5 * C + 0.5 * R
    np.fill_diagonal(C, 1.0)
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    C = (V * np.maximum(w, 0.05)) @ V.T
    d = np.sqrt(np.diag(C))
    return C / np.outer(d, d)


def _basis_matrix(rd, dim: int) -> np.ndarray:
    """Starting matrix of a covariate basis: coefficient variances that give every coefficient
    an equal share of the variance, from the mean square of its column over the records."""
    sizes, code = _dim_code(rd, dim)
    ms = np.bincount(code, weights=rd.obs_vals ** 2, minlength=sizes[dim]) / max(len(set(rd.obs_rows)), 1)
    ms = np.where(ms > 0, ms, 1.0)
    return np.diag(1.0 / (sizes[dim] * ms))


def _compound_start(design: Design, rd, structure, P: np.ndarray, share: float, Y: np.ndarray):
    """(G0, per-level phenotypic variances) of a term with structured factors: share x P on the
    traits (x) level matrices of the other factors, in the order of the product; Y are the
    units' fixed-effect residuals (:func:`unit_residuals`)."""
    G0 = np.ones((1, 1))
    mats = []
    for i, (name, _) in enumerate(rd.dims):
        if name == "trait":
            M = share * P[np.ix_(rd.traits, rd.traits)]
        elif name in rd.bases:
            M = _basis_matrix(rd, i)
        else:
            M = _level_matrix(design, rd, i, P, Y)
        mats.append(M)
        G0 = np.kron(G0, M)
    if all(name != "trait" for name, _ in rd.dims):
        G0 = G0 * share * P[0, 0]
    return G0, np.diag(G0) / share
def _formula_init(design: Design, block):
    if block.k is None:
        return None
    return design.random[block.k].term.init


def _scales(structure, vd: np.ndarray) -> list:
    """Typical magnitude of each parameter: variances and covariances from the phenotypic
    variances of their traits; a common variance (idv, corv) from the smallest of them, so
    that its boundary value is negligible for every trait it covers. In a direct product the
    factor that carries the scale gets the compound's magnitude, the others (relative
    matrices, first variance held at 1) magnitude 1."""
    if structure.name == "ar1term":      # AR1 dimensions of a random term (mvreml.ar1_levels)
        return structure.scales(vd, _scales(structure.g, vd) if structure.n_g else [])
    if structure.name == "product":
        out = []
        big = float(np.mean(vd))
        for i, f in enumerate(structure.factors):
            sub = np.full(f.t, big if i == structure._free else 1.0)
            out += _scales(f, sub) if f.n_params else []
        return out
    out = []
    common = structure.name in ("idv", "corv")
    for kind, pair in zip(structure.kinds(), structure.trait_pairs()):
        if kind == "correlation":
            out.append(1.0)
        elif kind == "loading":
            out.append(float(np.sqrt(vd.mean())))
        elif pair is not None and not common:
            out.append(float(np.sqrt(vd[pair[0]] * vd[pair[1]])))
        else:
            out.append(float(vd.min()))
    return out


def fixed_mask(blocks, fix, init, terms) -> np.ndarray:
    """Parameters held at their starting values (``fix=`` names whole terms)."""
    mask = np.zeros(blocks[-1].stop, bool)
    for name in fix or []:
        if name not in terms and name != "units":
            raise ModelError(f"fix= names term {name!r}, which is not in the model (terms: {terms})")
        if not init or name not in init:
            raise StartingValueError(f"fix= holds {name!r} but init= gives no value for it", term=name)
        for b in blocks:
            if b.name == name or (name == "units" and b.k is None):
                mask[b.slice] = True
    for b in blocks:
        # scales held for identifiability in a direct product (reported "F")
        mask[b.slice] |= b.structure.fixed_params()
    return mask


# ---------------------------------------------------------------- init="pairwise"
def _sub_structure(term, t_sub: int):
    """The structure of a term in a sub-model on t_sub traits."""
    if t_sub == 1:
        return replace(term, structure="diag" if term.structure in ("corgh", "corv", "corh", "fa", "us")
                       else term.structure, fa_k=None, init=None)
    if term.structure == "fa" and term.fa_k >= t_sub:
        return replace(term, structure="us", fa_k=None, init=None)
    return replace(term, init=None)


def sub_model(fspec: FixedSpec, rspec: VarianceSpec, resid, traits: tuple):
    """The fixed, random and residual specifications of the model restricted to `traits`."""
    multi = len(traits) > 1
    fterms = []
    for ft in fspec.terms:
        if ft.traits is None:
            fterms.append(ft)
            continue
        keep = tuple(x for x in ft.traits if x in traits)
        if keep:
            fterms.append(replace(ft, traits=keep))
    fsub = FixedSpec(Response(tuple(traits), multi), fspec.intercept, tuple(fterms))
    rterms = []
    for rt in rspec.terms:
        keep = traits if rt.traits is None else tuple(x for x in rt.traits if x in traits)
        if not keep:
            continue
        sub = _sub_structure(rt, len(keep))
        rterms.append(replace(sub, traits=None if rt.traits is None else keep))
    return fsub, VarianceSpec(tuple(rterms)), _sub_structure(resid, len(traits))


def check_trait_model(rspec, resid, what: str = "init='pairwise'") -> None:
    """Refuse a model with structures on factors other than trait (pairwise fits combine
    trait matrices only)."""
    other = [rt.label for rt in rspec.terms if rt.dims or rt.at] + ([resid.label] if resid.sections else [])
    if other:
        raise StartingValueError(f"{what} combines univariate and bivariate fits of the traits; it "
                                 f"does not apply to structures on other factors ({', '.join(other)}): fit a "
                                 "simpler model first (diag() or us() on the factor) and pass its matrices "
                                 "with init={term: matrix}", term="init")


def model_terms(fspec, rspec) -> dict:
    """Term name -> the traits it covers ("units" for the residual), in model order."""
    traits = tuple(fspec.response.traits)
    terms = {rt.name: tuple(rt.traits or traits) for rt in rspec.terms}
    terms["units"] = traits
    return terms


def pairwise_init(fspec, rspec, resid, data, fit_parsed, P: pd.DataFrame) -> dict:
    """Starting matrices from univariate (and, for 3+ traits, bivariate) sub-model fits,
    combined by :func:`mvreml.combine.combine` (as :func:`mvreml.pairwise` does).

    Parameters
    ----------
    fspec, rspec, resid
        The parsed model.
    data : DataFrame
    fit_parsed : callable
        ``fit_parsed(fspec, rspec, resid) -> Result`` (mvreml's fit on parsed pieces).
    P : DataFrame
        Phenotypic covariance, trait-labelled (fills what no sub-model gives).

    Returns
    -------
    dict
        Term name -> trait-labelled positive definite DataFrame.
    """
    from .combine import combine, sub_trait_sets

    traits = tuple(fspec.response.traits)
    check_trait_model(rspec, resid)
    fits = {}
    for sub in sub_trait_sets(traits, bivariate=len(traits) >= 3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[sub] = fit_parsed(*sub_model(fspec, rspec, resid, sub))
        except MvremlError:       # a sub-model that cannot be fitted only loses its share
            fits[sub] = None
    P = P.loc[list(traits), list(traits)].to_numpy()
    return combine(fits, traits, model_terms(fspec, rspec), P=P).init
