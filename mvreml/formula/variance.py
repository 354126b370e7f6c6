"""Random and residual formulas: structured dimensions, at(), nesting, ide(), dsum sections,
spatial lattices, lme4 bars."""
from __future__ import annotations

from dataclasses import replace

from mvreml.errors import FormulaError

from ._parse import (_Factor, _BASES, _DIM_STRUCTURES, _LEVEL_CALLS, STRUCTURES, _factor, _init, _items,  # noqa: F401
                     _sides, _split, _structure, _terms, _text, _Tok, _trait_part, _unquote, _dedupe)
from .specs import At, Dim, FixedSpec, RandomTerm, Response, VarianceSpec

_AR1_CALLS = ("ar1", "ar1v", "ar1h")     # AR1 dimensions of a random term (mvreml.ar1_levels)

# ---------------------------------------------------------------- random and residual
def _level(f: _Factor, text: str) -> tuple[str, str | None, tuple[float, ...] | None, str, bool]:
    """A level factor of a random term -> (column, relmat, init, label, ide)."""
    if f.toks[0].kind != "name":
        raise FormulaError(f"{f.text!r} cannot be a random factor (term {text!r})", term=text)
    if f.args is None:
        return f.name, None, None, f.name, False
    if f.name not in _LEVEL_CALLS:
        raise FormulaError(f"{f.text!r} in {text!r} is not supported: a factor is written bare or as "
                           f"id(f), idv(f), vm(f, relmat), ide(f), or given a structure "
                           f"({', '.join(_DIM_STRUCTURES)}) or at(f, ...)", term=f.text)
    f.check_args(2 if f.name == "vm" else 1, ("init",) if f.name == "idv" else (), text)
    pos, n = f.pos, 2 if f.name == "vm" else 1
    if len(pos) != n or any(len(a) != 1 or a[0].kind not in ("name", "string") for a in pos):
        raise FormulaError(f"cannot read {f.text!r}: expected {f.name}(factor"
                           f"{', relmat' if n == 2 else ''})", term=f.text)
    col = _unquote(pos[0][0].text)
    relmat = _unquote(pos[1][0].text) if n == 2 else None
    label = f"vm({col}, {relmat})" if n == 2 else f"{f.name}({col})"
    return col, relmat, _init(f.kw("init"), text), label, f.name == "ide"


def _basis(toks, outer: _Factor, text: str) -> tuple[str, tuple]:
    """``pol(Days, 1)`` / ``leg(dim, 2)`` inside a structure -> (identifier, basis)."""
    g = _factor(list(toks), text)
    if g.name not in _BASES or g.args is None:
        raise FormulaError(f"cannot read {outer.text!r} in {text!r}: a structure takes a factor or a "
                           "covariate basis pol(x, k) / leg(x, k)", term=outer.text)
    g.check_args(2, (), text)
    if (len(g.pos) != 2 or len(g.pos[0]) != 1 or g.pos[0][0].kind != "name" or len(g.pos[1]) != 1
            or not g.pos[1][0].text.isdigit()):
        raise FormulaError(f"cannot read {g.text!r} in {text!r}: expected {g.name}(covariate, order), "
                           f"e.g. {g.name}(x, 2)", term=g.text)
    col, order = _unquote(g.pos[0][0].text), int(g.pos[1][0].text)
    if order < 1:
        raise FormulaError(f"{g.text!r} in {text!r}: the order of {g.name}() is at least 1", term=g.text)
    return f"{g.name}({col}, {order})", (g.name, order, col)


def _dim(f: _Factor, text: str) -> Dim:
    """``us(site)``, ``fa(site, 2)``, ``diag(Env, init=...)``: a structure on a data column;
    ``us(pol(Days, 1))``, ``diag(leg(dim, 2))``: a structure on a covariate basis."""
    if f.pos and len(f.pos[0]) > 1 and f.pos[0][0].text in _BASES:
        f.check_args(1, ("init",), text)
        if f.name in ("fa", "rr"):
            raise FormulaError(f"{f.text!r}: {f.name}() on a covariate basis is not supported", term=f.text)
        ident, basis = _basis(f.pos[0], f, text)
        return Dim(ident, f.name, None, _init(f.kw("init"), text), f"{f.name}({ident})", basis)
    if not f.pos or len(f.pos[0]) != 1 or f.pos[0][0].kind not in ("name", "string"):
        raise FormulaError(f"cannot read {f.text!r} in {text!r}: expected {f.name}(factor"
                           f"{', k' if f.name in ('fa', 'rr') else ''})", term=f.text)
    col = _unquote(f.pos[0][0].text)
    k = None
    if f.name in ("fa", "rr"):
        f.check_args(2, ("k", "init"), text)
        kt = f.kw("k") or (f.pos[1] if len(f.pos) > 1 else None)
        if kt is None or len(kt) != 1 or not kt[0].text.isdigit() or int(kt[0].text) < 1:
            raise FormulaError(f"{f.text!r} needs the number of factors k >= 1, e.g. {f.name}({col}, 1)",
                               term=f.text)
        k = int(kt[0].text)
    else:
        f.check_args(1, ("init",), text)
    label = f"{f.name}({col}, {k})" if k is not None else f"{f.name}({col})"
    return Dim(col, f.name, k, _init(f.kw("init"), text), label)


def _at_factor(f: _Factor, text: str) -> At:
    """``at(site)``, ``at(site, S3)``, ``at(site, 3)``, ``at(site, c("S1", "S2"))``."""
    f.check_args(2, (), text)
    if not f.pos or len(f.pos[0]) != 1 or f.pos[0][0].kind not in ("name", "string"):
        raise FormulaError(f"cannot read {f.text!r} in {text!r}: expected at(factor, levels)", term=f.text)
    col = _unquote(f.pos[0][0].text)
    if len(f.pos) < 2:
        return At(col, None)
    levels = []
    for item in _items(f.pos[1]):
        if len(item) != 1 or item[0].kind == "op":
            raise FormulaError(f"cannot read level {_text(item)!r} in {f.text!r}", term=f.text)
        level = (_unquote(item[0].text), item[0].kind == "number")
        if level in levels:
            raise FormulaError(f"level {level[0]!r} given twice in {f.text!r}", term=f.text)
        levels.append(level)
    return At(col, tuple(levels))


def _random_term(factors: list[_Factor], response: Response, text: str, residual: bool) -> RandomTerm:
    tpart = _trait_part(factors, response, text)
    if tpart is not None and not tpart.is_trait_call():
        raise FormulaError(f"{tpart.text!r} in {text!r}: give trait a structure, e.g. us(trait) or "
                           f"diag(trait) (known: {', '.join(STRUCTURES)})", term=tpart.text)
    dims, ats, levels, order, name_parts = [], [], [], [], []
    # crossed with vm() / ide(), a plain factor is a dimension of its own with K = I
    # (idv(env):vm(gen, ped) has variance sigma^2 I_env (x) A)
    has_rel = any(f.args is not None and f.name in ("vm", "ide") for f in factors)
    for f in factors:
        if f is tpart:
            order.append("trait")
        elif f.args is not None and f.name == "at":
            ats.append(_at_factor(f, text))
            name_parts.append(f"at({ats[-1].column})")
        elif f.args is not None and f.name in _DIM_STRUCTURES + _AR1_CALLS:
            dims.append(_dim(f, text))
            order.append(dims[-1].column)
            name_parts.append(dims[-1].label if dims[-1].structure in ("fa", "rr") else dims[-1].column)
        elif f.args is not None and f.name in _BASES:
            raise FormulaError(f"{f.text!r} in {text!r}: give the covariate basis a structure, e.g. "
                               f"us({f.text}) or diag({f.text})", term=f.text)
        else:
            lv = _level(f, text)
            if has_rel and lv[1] is None and not lv[4]:
                st = "idv" if f.args is not None and f.name == "idv" else "id"
                dims.append(Dim(lv[0], st, None, lv[2], lv[3]))
                order.append(lv[0])
                name_parts.append(lv[0])
                continue
            levels.append(lv)
            name_parts.append(lv[3] if lv[4] else lv[0])
    if response.multivariate and tpart is None:
        example = "units:us(trait)" if residual else f"diag(trait):{text}"
        raise FormulaError(f"{text!r} has no trait structure in a multivariate model; write e.g. "
                           f"{example}", term=text)
    if tpart is not None:
        structure, k, traits, init, tlabel = _structure(tpart, response, text)
    else:
        # a univariate term with structured dimensions has its scale there, not on the trait
        # (ar1 and ar1v are correlations on positions: the scale stays with the trait, see
        # mvreml.ar1_levels; ar1h's variances carry it)
        scaled = any(d.structure not in ("id", "ar1", "ar1v") for d in dims)
        structure, k, traits, init, tlabel = ("id" if scaled else "idv"), None, None, None, None
    if not levels and not any(d.structure in _AR1_CALLS for d in dims):
        raise FormulaError(f"{text!r} names no factor, e.g. {text}:Family", term=text)
    cols = [lv[0] for lv in levels] + [d.column for d in dims] + [a.column for a in ats]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise FormulaError(f"factor {dup[0]!r} appears twice in {text!r}", term=text)
    inits = [i for i in [init] + [lv[2] for lv in levels] + [d.init for d in dims] if i is not None]
    relmats = [lv[1] for lv in levels if lv[1] is not None]
    names = tuple(lv[0] for lv in levels)
    if len(inits) > 1:
        raise FormulaError(f"starting values given twice in {text!r}", term=text)
    if (relmats or any(lv[4] for lv in levels)) and len(names) > 1:
        raise FormulaError(f"vm() / ide() cannot be crossed with another level factor in {text!r}", term=text)
    if "units" in names and not residual and names != ("units",):
        raise FormulaError(f"'units' is the residual: give {text!r} as residual=", term=text)
    pieces = [lv[3] for lv in levels]
    if dims or ats or any(lv[4] for lv in levels):
        label = ":".join(tlabel if f is tpart else f.text for f in factors)
        name = ":".join(name_parts)
    else:
        # asreml writes the residual units:us(trait) and random terms us(trait):Family
        label = ":".join(pieces + [tlabel] if residual else [tlabel] + pieces) if tlabel else ":".join(pieces)
        name = ":".join(names)
    return RandomTerm(name, names, structure, k, traits, relmats[0] if relmats else None,
                      label, inits[0] if inits else None, dims=tuple(dims),
                      order=tuple(order) if dims else (), at=tuple(ats), ide=any(lv[4] for lv in levels),
                      as_factor=tuple(lv[0] for lv in levels if lv[3].startswith(("C(", "factor("))))


def _nest(rhs: list[_Tok]) -> list[_Tok]:
    """Nesting in variance formulas: ``a/b/c`` is ``a + a:b + a:b:c`` and
    ``at(site):rep/block`` is ``at(site):rep + at(site):rep:block``."""
    out: list[_Tok] = []
    for sep, chunk in _split(rhs, ("+", "-")):
        pieces = [p for _, p in _split(chunk, ("/",))]
        if len(pieces) > 1 and any(not p for p in pieces):
            raise FormulaError(f"empty side of '/' in {_text(chunk)!r}", term=_text(chunk))
        acc: list[_Tok] = []
        for i, piece in enumerate(pieces):
            acc = acc + ([_Tok("op", ":")] if acc else []) + list(piece)
            if out or sep is not None:
                out.append(_Tok("op", (sep or "+") if i == 0 else "+"))
            out.extend(acc)
    return out


def _variance_terms(formula: str, response: Response, what: str) -> tuple[list, str]:
    from mvreml._bars import split_bars

    _, rhs, piece = _sides(formula, what, False)
    items = []
    rhs, bar_items = split_bars(rhs, response, piece) if what == "random" else (rhs, [])
    items += bar_items
    for sign, factors, text, written in _terms(_nest(rhs), piece) if rhs else []:
        if any(f.name == "dsum" for f in factors):
            raise FormulaError(f"{text!r}: dsum() structures are not supported", term=text)
        if sign == "-":
            raise FormulaError(f"'- {text}' is not supported in a {what} formula", term=text)
        items.append((_random_term(factors, response, text, what == "residual"), written, text))
    return items, piece


def parse_random(formula: str | None, response: Response) -> VarianceSpec:
    """Parse the random formula (``None`` or ``""``: no random terms).

    Parameters
    ----------
    formula : str or None
        ``"~ us(trait):Family + diag(trait):Block"``, ``"~ vm(animal, ped) + byear"``.
    response : Response
        From :func:`parse_fixed`: decides whether ``trait`` is allowed and names the traits.

    Returns
    -------
    VarianceSpec
        The random terms in the order written.
    """
    if formula is None or not str(formula).strip():
        return VarianceSpec(())
    items, piece = _variance_terms(formula, response, "random")
    # rr(site, k):gen + diag(site):gen is asreml's way to write fa as two terms: an rr term is
    # not the same term as another structure on the same factors
    key = lambda t: (frozenset(t.factors), frozenset(d.column for d in t.dims), t.at, t.ide,  # noqa: E731
                     tuple(d.structure == "rr" for d in t.dims))
    return VarianceSpec(_dedupe(items, key, piece, "random"))


def parse_residual(formula: str | None, response: Response) -> RandomTerm:
    """Parse the residual formula.

    Parameters
    ----------
    formula : str or None
        ``"~ units"``, ``"~ units:us(trait)"``, ``"~ id(units):diag(trait)"``; residual sections
        ``"~ dsum(~ units | site)"`` (one residual matrix per level of site; also written
        ``"~ at(site):units"`` or ``"~ units:at(site)"``), ``"~ dsum(~ units:us(trait) | site)"``.
        None or ``""``: ``idv(units)``, or ``units:us(trait)`` for a multivariate response.
    response : Response

    Returns
    -------
    RandomTerm
        Named ``"units"``; ``traits`` is None (the residual covers every trait); ``sections``
        the column whose levels have their own residual matrix (None: one for all records).
    """
    if formula is None or not str(formula).strip():
        formula = "~ units:us(trait)" if response.multivariate else "~ units"
    _, rhs, piece = _sides(formula, "residual", False)
    parts = _split(rhs, ("+", "-"))
    if len(parts) == 1 and rhs[0].kind == "name" and rhs[0].text == "dsum":
        return _dsum(_factor(rhs, piece), response, piece)
    lattice = _lattice_residual(rhs, response, piece)
    if lattice is not None:
        return lattice
    items, piece = _variance_terms(formula, response, "residual")
    if len(items) != 1:
        raise FormulaError(f"the residual {piece!r} must be one term, e.g. units:us(trait) "
                           "(sections: dsum(~ units | site))", term=piece)
    term = items[0][0]
    if term.factors != ("units",) or term.relmat is not None or term.ide:
        raise FormulaError(f"the residual {piece!r} must be built on 'units', e.g. units:us(trait)",
                           term=piece)
    if term.dims:
        raise FormulaError(f"the residual {piece!r}: a structure on {term.dims[0].column!r} is not "
                           f"supported in the residual; one residual matrix per level is "
                           f"dsum(~ units | {term.dims[0].column})", term=piece)
    if term.traits is not None:
        raise FormulaError(f"the residual {piece!r} must cover every trait, not at(trait, ...)", term=piece)
    if term.at:
        if len(term.at) > 1 or term.at[0].levels is not None:
            raise FormulaError(f"the residual {piece!r}: at(factor) gives every level of one factor its "
                               "own residual; residuals on some levels only are not supported", term=piece)
        col = term.at[0].column
        inner = "units" if term.structure == "idv" else f"units:{term.label.split(':')[-1]}"
        return replace(term, name="units", at=(), sections=col, label=f"dsum(~ {inner} | {col})")
    return term


_LATTICE_CALLS = ("ar1", "id")


def _lattice_residual(rhs, response: Response, piece: str, any_lattice: bool = False) -> RandomTerm | None:
    """``ar1(col):ar1(row)``, ``id(col):ar1(row)``, ``ar1(row)``: a spatial residual on the
    field lattice (mvreml.lattice); None when the residual is not of that form.
    ``any_lattice``: id(col):id(row) too (a section of a dsum with other lattices)."""
    if len(_split(rhs, ("+", "-"))) != 1:
        return None
    factors = [_factor(f, piece) for _, f in _split(rhs, (":",))]
    if not any(f.name == ("id" if any_lattice else "ar1") or f.name == "ar1" for f in factors
               if f.args is not None):
        return None
    if any(f.name == "units" for f in factors):
        raise FormulaError(f"the residual {piece!r}: a spatial residual is written on the lattice "
                           "factors alone, e.g. ar1(col):ar1(row) (units is implied)", term=piece)
    trait = next((f for f in factors if f.args is not None and f.pos and len(f.pos[0]) == 1
                  and f.pos[0][0].text == "trait"), None)
    if trait is not None or response.multivariate:
        model = piece.lstrip("~ ").strip()
        raise FormulaError(f"the residual {piece!r}: multi-trait spatial residuals ({model}: a trait matrix "
                           "(x) AR1 (x) AR1 over the lattice) are not supported yet; fit the traits one at a "
                           "time with a spatial residual each", term=piece)
    dims = []
    for f in factors:
        if f.args is None or f.name not in _LATTICE_CALLS:
            raise FormulaError(f"{f.text!r} in the residual {piece!r}: a spatial residual is a product "
                               "of ar1(factor) and id(factor), e.g. ar1(col):ar1(row)", term=f.text)
        f.check_args(1, (), piece)
        if len(f.pos) != 1 or len(f.pos[0]) != 1 or f.pos[0][0].kind not in ("name", "string"):
            raise FormulaError(f"cannot read {f.text!r}: expected {f.name}(factor)", term=f.text)
        col = _unquote(f.pos[0][0].text)
        dims.append(Dim(col, f.name, None, None, f"{f.name}({col})"))
    if len({d.column for d in dims}) != len(dims) or len(dims) > 2:
        raise FormulaError(f"the residual {piece!r}: a lattice has one or two distinct dimensions", term=piece)
    label = ":".join(d.label for d in dims)
    return RandomTerm("units", (), "lattice", None, None, None, label, None, dims=tuple(dims),
                      order=tuple(d.column for d in dims))


def _dsum(f: _Factor, response: Response, piece: str) -> RandomTerm:
    """``dsum(~ units | site)``: the inner residual structure, once per level of site."""
    if f.args is None or len(f.pos) != 1:
        raise FormulaError(f"cannot read {piece!r}: expected dsum(~ units | factor)", term=piece)
    f.check_args(1, ("levels",), piece)
    sides = _split(list(f.pos[0]), ("|",))
    if len(sides) != 2 or len(sides[1][1]) != 1 or sides[1][1][0].kind not in ("name", "string"):
        raise FormulaError(f"cannot read {piece!r}: expected dsum(~ units | factor), one factor "
                           "after '|'", term=piece)
    col = _unquote(sides[1][1][0].text)
    inner = _text(sides[0][1])
    if not inner.lstrip().startswith("~"):
        raise FormulaError(f"cannot read {piece!r}: the structure inside dsum() is a formula, "
                           f"dsum(~ units | {col})", term=piece)
    if f.kw("levels") is not None:
        return _dsum_levels(f, sides[0][1], col, response, piece)
    term = parse_residual(inner, response)
    if term.sections is not None:
        raise FormulaError(f"{piece!r}: dsum() cannot be nested", term=piece)
    return replace(term, sections=col, label=f"dsum({inner.strip()} | {col})")


def _dsum_levels(f: _Factor, inner, col: str, response: Response, piece: str) -> RandomTerm:
    """``dsum(~ A + B | site, levels = list(1:2, 3))``: structure A on the sections listed first,
    B on the next (asreml-R); a section is given by position (1, 2:3) or by name ("S1")."""
    toks = list(inner)[1:]                       # after the "~"
    structures = [p for _, p in _split(toks, ("+",))]
    lv = list(f.kw("levels"))
    if not (len(lv) > 3 and lv[0].text == "list" and lv[1].text == "(" and lv[-1].text == ")"):
        raise FormulaError(f"{piece!r}: levels= is a list with one entry per structure, e.g. "
                           f"levels = list(1:2, 3) or list(c(\"S1\", \"S2\"), \"S3\")", term=piece)
    groups = [p for _, p in _split(lv[2:-1], (",",))]
    if len(groups) != len(structures):
        raise FormulaError(f"{piece!r}: {len(structures)} structures but levels= lists {len(groups)} "
                           "groups of sections; give one group per structure", term=piece)
    out, first = [], None
    for st, grp in zip(structures, groups):
        term = _lattice_residual(st, response, piece, any_lattice=True)
        if term is None:
            raise FormulaError(f"{_text(st)!r} in {piece!r}: with levels=, each structure is a spatial "
                               "lattice such as ar1(col):ar1(row), id(col):ar1(row) or id(col):id(row)",
                               term=_text(st))
        cols = [d.column for d in term.dims]
        if first is None:
            first = term
        elif cols != [d.column for d in first.dims]:
            raise FormulaError(f"{piece!r}: every structure of the dsum is on the same lattice factors "
                               f"({':'.join(d.column for d in first.dims)}), {_text(st)!r} is on "
                               f"{':'.join(cols)}", term=piece)
        out.append((_section_levels(grp, piece), term.dims))
    return replace(first, sections=col, label=_text(f.toks), section_dims=tuple(out))


def _section_levels(toks, piece: str) -> tuple:
    """``1:2`` / ``3`` / ``c(1, 3)`` / ``"S1"`` / ``c("S1", "S2")`` -> ((text, by_position), ...)."""
    out = []
    for item in _items(toks):
        rng = _split(item, (":",))
        if (len(rng) == 2 and all(len(p) == 1 and p[0].kind == "number" and p[0].text.isdigit()
                                  for _, p in rng)):
            a, b = int(rng[0][1][0].text), int(rng[1][1][0].text)
            if b < a:
                raise FormulaError(f"{_text(item)!r} in {piece!r}: a range of sections runs upwards", term=piece)
            out += [(str(i), True) for i in range(a, b + 1)]
        elif len(item) == 1 and item[0].kind in ("number", "string", "name"):
            out.append((_unquote(item[0].text), item[0].kind == "number"))
        else:
            raise FormulaError(f"cannot read sections {_text(item)!r} in {piece!r}: give positions "
                               "(1, 2:3) or names (\"S1\")", term=piece)
    return tuple(out)


def columns_used(fixed: FixedSpec, random: VarianceSpec, residual: RandomTerm) -> set[str]:
    """Data columns the model refers to: responses, fixed-term columns, random factors.

    ``trait`` and ``units`` are not columns, nor are relationship-matrix names.
    """
    cols = set(fixed.response.traits)
    cols.update(c for t in fixed.terms for c in t.columns)
    for t in random.terms + (residual,):
        cols.update(t.factors)
        cols.update(c for d in t.dims for c in d.data_columns)
        cols.update(a.column for a in t.at)
        if t.sections is not None:
            cols.add(t.sections)
    return cols - {"units", "trait"}

