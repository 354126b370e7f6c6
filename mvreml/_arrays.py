"""Arrays -> the engine's Design: the array route into mvreml (:class:`mvreml.Model`).

The formula route (:func:`mvreml.design.build_design`) turns a DataFrame and parsed terms
into a :class:`~mvreml.design.Design`; this module builds the same object from y (n x t,
NaN = missing), X and the random terms' Z matrices, so that both routes run one engine
(MMEPattern, REMLModel, iterate, build_result). Every input is checked here, before any
compiled code sees it, with typed errors that name the argument and the sizes.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from ._datachecks import check_magnitudes
from .design import Design, RandomDesign
from .errors import ArgumentError, DataError, DataWarning, warn
from .formula import RandomTerm
from .likelihood import ParamBlock
from .rank import independent_columns
from .structures import Idv, Product, Structure, US
from .structures.public import relabel

_COEF = "coefficient"      # the dimension of a term given several Z matrices


class Random:
    """A random term given by its design matrix: u ~ N(0, K (x) G), contributing Z u.

    Parameters
    ----------
    Z : scipy.sparse matrix or ndarray (n x q), or a sequence of c of them
        One row per unit (row of y), one column per level. Any values: an incidence matrix,
        covariate values (a slope per level), several memberships per row. A sequence gives
        one matrix per coefficient (intercept, slope, ...): the level's effect on a unit is
        ``sum_m Z_m[i, a] u[a, m]`` and G covers the coefficients.
    structure : Structure, optional
        G, on the term's traits (t_k x t_k) or, with c coefficients, on traits (x)
        coefficients (traits slowest, size t_k c); default ``US`` (``Idv`` univariate).
        A structure built from a number (``US(2)``) gets the trait names.
    K, Kinv : matrix, optional
        The relationship among the q levels, as K or as K^-1 (dense or scipy.sparse,
        symmetric positive definite), or an :class:`mvreml.relmat.RelationshipMatrix` /
        :class:`mvreml.Pedigree` (its labels order Z's columns). Default K = I.
    levels : sequence of str, optional
        Labels of the q levels (Z's columns), for the BLUP tables; default "1".."q".
    name : str, optional
        The term's name in parameter labels and results; default "u1", "u2", ...
    traits : sequence of str, optional
        The traits the term covers (default all).
    coefficients : sequence of str, optional
        Names of the c coefficients of a sequence of Z matrices; default "c1".."cc".
    """

    def __init__(self, Z: "ArrayLike | sp.spmatrix | Sequence", structure: Structure | None = None, *,
                 K: "ArrayLike | sp.spmatrix | object | None" = None,
                 Kinv: "ArrayLike | sp.spmatrix | object | None" = None,
                 levels: Sequence[str] | None = None, name: str | None = None,
                 traits: Sequence[str] | None = None, coefficients: Sequence[str] | None = None) -> None:
        self.Z = Z
        self.structure = structure
        self.K, self.Kinv = K, Kinv
        self.levels = None if levels is None else [str(x) for x in levels]
        self.name = name
        self.traits = None if traits is None else [str(x) for x in traits]
        self.coefficients = None if coefficients is None else [str(x) for x in coefficients]

    def __repr__(self) -> str:
        return f"Random(name={self.name!r}, structure={self.structure})"


class Residual:
    """The residual: R_i = R0[o_i, o_i] / w_i per unit, one R0 per group.

    Parameters
    ----------
    structure : Structure, optional
        R0 on the traits; default ``US(t)`` (``Idv`` univariate).
    groups : sequence, optional
        A label per unit (row of y): one R0 per group (asreml's ``dsum``), each with its own
        parameters, labelled ``"{name}_{group}!R"``.
    name : str
        Name of the grouping in labels (default "group").
    """

    def __init__(self, structure: Structure | None = None, *, groups: ArrayLike | None = None,
                 name: str = "group") -> None:
        self.structure = structure
        self.groups = groups
        self.name = str(name)


@dataclass
class ArrayInputs:
    """The validated inputs of a Model (kept to rebuild it with a new y or X)."""

    Y: np.ndarray                    # n x t, NaN = missing (all rows, none dropped)
    traits: list
    X: list                          # per trait: csr (n x p_j)
    fixef_names: list                # per trait: names
    random: list                     # per term: dict (validated)
    residual: Residual
    weights: np.ndarray
    per_trait_x: bool
    messages: list = field(default_factory=list)


def _matrix(M, what: str, n: int) -> sp.csr_matrix:
    """A dense or sparse matrix with n rows, finite, as float CSR."""
    if sp.issparse(M):
        out = sp.csr_matrix(M, dtype=float)
    else:
        try:
            arr = np.asarray(M, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"{what} must be a numeric matrix: {exc}", argument=what.split()[0]) from None
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ArgumentError(f"{what} must be 2-D (n x p), got {arr.ndim} dimensions",
                                argument=what.split()[0])
        out = sp.csr_matrix(arr)
    if out.shape[0] != n:
        raise ArgumentError(f"{what} has {out.shape[0]} rows but y has {n} (one row per unit)",
                            argument=what.split()[0])
    out.sum_duplicates()
    bad = ~np.isfinite(out.data)
    if bad.any():
        coo = out.tocoo()
        k = int(np.flatnonzero(~np.isfinite(coo.data))[0])
        raise DataError(f"{what} is {coo.data[k]} in row {int(coo.row[k])}, column {int(coo.col[k])}: "
                        f"values must be finite", column=what.split()[0])
    out.eliminate_zeros()
    return out


def check_response(y, traits) -> tuple[np.ndarray, list]:
    """y as an n x t float array (NaN = missing) and the trait names."""
    try:
        Y = np.array(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"y must be a numeric array (n x t, NaN for missing): {exc}", argument="y") from None
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] == 0 or Y.shape[1] == 0:
        raise ArgumentError(f"y must be an n x t array with n, t >= 1, got shape {Y.shape}", argument="y")
    inf = np.isinf(Y)
    if inf.any():
        i, j = np.argwhere(inf)[0]
        raise DataError(f"y is {Y[i, j]} in row {i}, trait {j}: use NaN for a missing value", column="y")
    t = Y.shape[1]
    if traits is None:
        traits = ["y"] if t == 1 else [f"y{j + 1}" for j in range(t)]
    traits = [str(x) for x in traits]
    if len(traits) != t or len(set(traits)) != t:
        raise ArgumentError(f"traits= gives {len(traits)} names ({traits}) for the {t} columns of y; give "
                            f"{t} distinct names", argument="traits")
    for j, name in enumerate(traits):
        if np.isnan(Y[:, j]).all():
            raise DataError(f"trait {name!r} (column {j} of y) has no observed value", column=name)
    return Y, traits


def check_fixed(X, n: int, traits: list, fixef_names) -> tuple[list, list, bool]:
    """Per trait: X_j (csr, n x p_j) and its column names; per_trait: X was a sequence."""
    t = len(traits)
    if X is None:
        return [sp.csr_matrix((n, 0)) for _ in traits], [[] for _ in traits], False
    per_trait = isinstance(X, (list, tuple))
    if per_trait:
        if len(X) != t:
            raise ArgumentError(f"X is a sequence of {len(X)} matrices but y has {t} traits: give one X per "
                                f"trait, or one matrix for all", argument="X")
        mats = [_matrix(M, f"X[{j}] (trait {traits[j]!r})", n) for j, M in enumerate(X)]
    else:
        mats = [_matrix(X, "X", n)] * t
    if fixef_names is None:
        names = [[f"x{k + 1}" for k in range(M.shape[1])] for M in mats]
    elif per_trait:
        names = [[str(x) for x in nm] for nm in fixef_names]
    else:
        names = [[str(x) for x in fixef_names]] * t
    for j, (M, nm) in enumerate(zip(mats, names)):
        if len(nm) != M.shape[1]:
            raise ArgumentError(f"fixef_names gives {len(nm)} names for the {M.shape[1]} columns of X"
                                + (f"[{j}]" if per_trait else ""), argument="fixef_names")
    return mats, names, per_trait


def check_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape[0] != n:
        raise ArgumentError(f"weights has {w.shape[0]} values but y has {n} rows", argument="weights")
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"weights must be positive and finite (row {i} has {w[i]})", column="weights")
    return w


def check_random(terms, n: int, traits: list) -> list:
    """Validate the random terms: Z matrices, K / K^-1, names, traits, structure sizes."""
    from . import relmat
    from .pedigree import Pedigree

    if terms is None:
        terms = []
    if isinstance(terms, Random):
        terms = [terms]
    out, names = [], set()
    for k, term in enumerate(terms):
        if not isinstance(term, Random):
            raise ArgumentError(f"random[{k}] is a {type(term).__name__}; give mvreml.Random(Z, ...)",
                                argument="random")
        name = term.name or f"u{k + 1}"
        if name in names or name == "units":
            raise ArgumentError(f"random[{k}]: the name {name!r} is "
                                + ("reserved for the residual" if name == "units" else "used twice"),
                                argument="random")
        names.add(name)
        what = f"random term {name!r}"
        Zs = term.Z if isinstance(term.Z, (list, tuple)) else [term.Z]
        if not Zs:
            raise ArgumentError(f"{what}: Z is an empty sequence", argument="Z")
        Zs = [_matrix(Z, f"Z of {what}" + (f" [{m}]" if len(Zs) > 1 else ""), n) for m, Z in enumerate(Zs)]
        q = Zs[0].shape[1]
        if any(Z.shape[1] != q for Z in Zs):
            raise ArgumentError(f"{what}: its Z matrices have {[Z.shape[1] for Z in Zs]} columns; they must "
                                "all have one column per level", argument="Z")
        if term.K is not None and term.Kinv is not None:
            raise ArgumentError(f"{what}: give K or Kinv, not both", argument="K")
        rel = None
        given = term.K if term.K is not None else term.Kinv
        if isinstance(given, (relmat.RelationshipMatrix, Pedigree)):
            rel = relmat.as_relmat(given, name)
        elif given is not None:
            if term.levels is not None and len(term.levels) != q:
                raise ArgumentError(f"{what}: levels= has {len(term.levels)} labels but Z has {q} columns",
                                    argument="levels")
            shape = given.shape if hasattr(given, "shape") else np.shape(given)
            if tuple(shape) != (q, q):
                raise ArgumentError(f"{what}: {'K' if term.K is not None else 'Kinv'} has shape {tuple(shape)} "
                                    f"but Z has {q} columns (levels): it must be {q} x {q}",
                                    argument="K" if term.K is not None else "Kinv")
            labels = term.levels if term.levels is not None else [str(a + 1) for a in range(q)]
            build = relmat.matrix if term.K is not None else relmat.inverse
            rel = build(given, labels=labels, name=name)
        if rel is not None:
            levels = [str(x) for x in rel.labels]
            if len(levels) != q:
                raise ArgumentError(f"{what}: the relationship has {len(levels)} levels but Z has {q} columns",
                                    argument="Z")
        else:
            levels = term.levels if term.levels is not None else [str(a + 1) for a in range(q)]
            if len(levels) != q:
                raise ArgumentError(f"{what}: levels= has {len(levels)} labels but Z has {q} columns",
                                    argument="levels")
        tr = term.traits if term.traits is not None else list(traits)
        unknown = [x for x in tr if x not in traits]
        if unknown or not tr or len(set(tr)) != len(tr):
            raise ArgumentError(f"{what}: traits={tr} must be distinct traits of the model ({traits})",
                                argument="traits")
        c = len(Zs)
        coefs = term.coefficients if term.coefficients is not None else [f"c{m + 1}" for m in range(c)]
        if len(coefs) != c:
            raise ArgumentError(f"{what}: coefficients= has {len(coefs)} names for {c} Z matrices",
                                argument="coefficients")
        size = len(tr) * c
        st = term.structure
        if st is None:
            st = Idv(1) if size == 1 else US(size)
        if not isinstance(st, Structure):
            raise ArgumentError(f"{what}: structure must be an mvreml.structures class (US(t), Diag(t), ...), "
                                f"not {type(st).__name__}", argument="structure")
        if st.t != size:
            raise ArgumentError(f"{what}: its structure {st} covers {st.t} levels but the term has {len(tr)} "
                                f"trait(s) x {c} coefficient(s) = {size}", argument="structure")
        out.append(dict(name=name, Z=Zs, rel=rel, levels=levels, traits=tr, coefs=coefs,
                        structure=_relabel(st, tr, coefs)))
    return out


def _relabel(st, traits, coefs):
    """Give structures built from a number the model's names (traits, coefficients)."""
    compound = [":".join(p) for p in itertools.product(traits, coefs)] if len(coefs) > 1 else list(traits)
    if isinstance(st, Product):
        parts = []
        for f in st.factors:
            if f.dim == "trait" and f.t == len(traits):
                parts.append(relabel(f, traits))
            elif f.dim != "trait" and f.t == len(coefs) and len(coefs) > 1:
                parts.append(relabel(f, coefs))
            else:
                parts.append(f)
        return Product(parts) if any(a is not b for a, b in zip(parts, st.factors)) else st
    if len(coefs) == 1:
        return relabel(st, traits)
    return relabel(st, coefs if len(traits) == 1 else compound)


def check_residual(residual, n: int, traits: list) -> Residual:
    res = Residual() if residual is None else residual
    if not isinstance(res, Residual):
        raise ArgumentError(f"residual must be mvreml.Residual(...), not {type(res).__name__}", argument="residual")
    t = len(traits)
    st = res.structure if res.structure is not None else (Idv(1) if t == 1 else US(t))
    if not isinstance(st, Structure):
        raise ArgumentError(f"the residual structure must be an mvreml.structures class, not {type(st).__name__}",
                            argument="residual")
    if st.t != t:
        raise ArgumentError(f"the residual structure {st} covers {st.t} traits but y has {t}", argument="residual")
    groups = None
    if res.groups is not None:
        groups = np.asarray(res.groups).reshape(-1)
        if groups.shape[0] != n:
            raise ArgumentError(f"residual groups has {groups.shape[0]} labels but y has {n} rows",
                                argument="groups")
        groups = groups.astype(str)
    return Residual(relabel(st, traits), groups=groups, name=res.name)


def build(inputs: ArrayInputs) -> tuple[Design, list]:
    """The Design and the ParamBlocks of validated inputs (the formula route's objects)."""
    Y, traits = inputs.Y, inputs.traits
    keep = ~np.isnan(Y).all(axis=1)
    messages = list(inputs.messages)
    if not keep.all():
        text = f"{int((~keep).sum())} rows of y with no observed trait dropped"
        messages.append(text)
        warn(text, DataWarning)
    rows = np.flatnonzero(keep)
    Ysub = Y[rows]
    observed = ~np.isnan(Ysub)
    counts = observed.sum(axis=1)
    unit_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    obs_unit, obs_trait = np.nonzero(observed)
    obs_unit, obs_trait = obs_unit.astype(np.int64), obs_trait.astype(np.int64)
    y = Ysub[obs_unit, obs_trait]
    res = inputs.residual
    if res.groups is None:
        sections, unit_section, section_column = None, np.zeros(len(rows), np.int64), None
    else:
        sections, unit_section = np.unique(res.groups[rows], return_inverse=True)
        sections, section_column = [str(s) for s in sections], res.name
    keyed = np.column_stack([unit_section, observed]).astype(np.int64)
    pkeys, unit_pattern = np.unique(keyed, axis=0, return_inverse=True)
    X, names, fixed_terms, dropped = _long_fixed(inputs, rows, obs_unit, obs_trait)
    if dropped:
        messages.append("aliased fixed-effect columns dropped: " + ", ".join(dropped))
    rand = [_random_design(term, traits, rows, obs_unit, obs_trait) for term in inputs.random]
    for rd in rand:
        if rd.identity and rd.q < 2:
            raise DataError(f"random term {rd.name!r} has {rd.q} level: a variance needs at least two levels",
                            column=rd.name)
    design = Design(traits=list(traits), y=y, obs_unit=obs_unit, obs_trait=obs_trait, unit_start=unit_start,
                    weights=inputs.weights[rows], patterns=pkeys[:, 1:].astype(bool),
                    unit_pattern=unit_pattern.ravel().astype(np.int64), X=X, fixef_names=names,
                    fixed_terms=fixed_terms, random=rand, n_dropped=int((~keep).sum()),
                    dropped_columns=dropped, messages=messages, unit_rows=rows, sections=sections,
                    section_column=section_column, pattern_section=pkeys[:, 0].astype(np.int64),
                    unit_section=unit_section.astype(np.int64))
    return design, blocks(design, inputs)


def _long_fixed(inputs: ArrayInputs, rows, obs_unit, obs_trait):
    """Long-format X (N x p, trait blocks in trait order), names, terms, dropped aliased columns."""
    traits = inputs.traits
    multi = len(traits) > 1
    parts, names, owners = [], [], []
    n_obs = len(obs_unit)
    for j, (M, nm) in enumerate(zip(inputs.X, inputs.fixef_names)):
        if M.shape[1] == 0:
            continue
        mask = obs_trait == j
        S = sp.csr_matrix((np.ones(int(mask.sum())), (np.flatnonzero(mask), obs_unit[mask])),
                          shape=(n_obs, len(rows)))
        parts.append(S @ M[rows])
        names.extend(f"{traits[j]}:{x}" if multi else x for x in nm)
        owners.extend([traits[j] if multi else "X"] * len(nm))
    X = sp.hstack(parts, format="csc") if parts else sp.csc_matrix((n_obs, 0))
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise ArgumentError(f"fixef_names repeats {dup}", argument="fixef_names")
    check_magnitudes(X, names)
    keep, dropped_idx = independent_columns(X)
    dropped = [names[i] for i in dropped_idx]
    X = sp.csr_matrix(X[:, keep])
    X.sort_indices()
    names = [names[i] for i in keep]
    fixed_terms: dict = {}
    for pos, i in enumerate(keep):
        fixed_terms.setdefault(owners[i], []).append(pos)
    return X, names, fixed_terms, dropped


def _random_design(term: dict, traits, rows, obs_unit, obs_trait) -> RandomDesign:
    """A RandomDesign whose Z entries come from the user's matrices (observation, column, value)."""
    tr_idx = np.array([traits.index(x) for x in term["traits"]], dtype=np.int64)
    tpos = np.full(len(traits), -1, np.int64)
    tpos[tr_idx] = np.arange(len(tr_idx))
    c = len(term["Z"])
    tc = len(tr_idx) * c
    obs = np.flatnonzero(tpos[obs_trait] >= 0)
    R, C, V = [], [], []
    for m, Z in enumerate(term["Z"]):
        Zo = Z[rows][obs_unit[obs]].tocoo()
        r = obs[Zo.row]
        R.append(r)
        C.append(Zo.col.astype(np.int64) * tc + tpos[obs_trait[r]] * c + m)
        V.append(Zo.data)
    R, C, V = (np.concatenate(a) for a in (R, C, V))
    order = np.lexsort((C, R))
    Z0 = term["Z"][0][rows]
    first = np.full(len(rows), -1, np.int64)
    has = np.diff(Z0.indptr) > 0
    first[has] = Z0.indices[Z0.indptr[:-1][has]]
    rel = term["rel"]
    st = term["structure"]
    rt = RandomTerm(name=term["name"], factors=(term["name"],), structure=st.name, fa_k=st.k,
                    traits=None if len(tr_idx) == len(traits) else tuple(term["traits"]),
                    relmat=None if rel is None else term["name"], label=term["name"], init=None)
    q = len(term["levels"])
    dims = [] if c == 1 else ([("trait", tuple(term["traits"]))] if len(tr_idx) > 1 or len(traits) > 1 else []) \
        + [(_COEF, tuple(term["coefs"]))]
    compound = ([":".join(p) for p in itertools.product(term["traits"], term["coefs"])]
                if c > 1 and dims[0][0] == "trait" else (list(term["coefs"]) if c > 1 else list(term["traits"])))
    return RandomDesign(term=rt, traits=tr_idx, levels=np.asarray(term["levels"]), level_of_unit=first,
                        kinv=sp.identity(q, format="csc") if rel is None else sp.csc_matrix(rel.kinv()),
                        logdet_k=0.0 if rel is None else float(rel.logdet()), identity=rel is None,
                        kdiag=None if rel is None else rel.diagonal(), dims=dims,
                        obs_rows=R[order], obs_cols=C[order], obs_vals=V[order], compound=compound,
                        bases={} if c == 1 else {_COEF: {"kind": "arrays", "columns": list(term["coefs"])}})


def blocks(design: Design, inputs: ArrayInputs) -> list:
    """ParamBlocks as mvreml.api._blocks makes them: random terms in order, then the residual
    (one block per group)."""
    out, start = [], 0
    for k, term in enumerate(inputs.random):
        st = term["structure"]
        out.append(ParamBlock(name=term["name"], structure=st, start=start, stop=start + st.n_params, k=k))
        start += st.n_params
    st = inputs.residual.structure
    for sec, level in enumerate(design.sections or [None]):
        name, label = ("units", None) if level is None else (f"{design.section_column}_{level}",
                                                             f"{design.section_column}_{level}!R")
        out.append(ParamBlock(name=name, structure=st, start=start, stop=start + st.n_params, k=None,
                              section=None if level is None else sec, label=label))
        start += st.n_params
    return out
