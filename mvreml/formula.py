"""asreml-R 4 style model strings -> term specifications (pure parsing: no numbers, no data).

A small tokenizer and a splitter that respects parentheses and quotes turn the strings given
to ``mvreml.fit`` into frozen dataclasses; ``design.py`` turns those into matrices. Labels are
canonical (trait part first, ``sex:trait`` -> ``trait:sex``; spacing normalised; no ``init=``;
the residual is written ``units:us(trait)``), so that a term always gets the same label.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from typing import NamedTuple

from .errors import FormulaError

__all__ = ["Response", "FixedTerm", "FixedSpec", "RandomTerm", "VarianceSpec", "STRUCTURES", "Dim", "At",
           "parse_fixed", "parse_random", "parse_residual", "columns_used"]

#: Covariance structures known to mvreml (on the traits or on any factor).
STRUCTURES = ("us", "diag", "idv", "id", "corgh", "corv", "corh", "fa")
_CORRELATION = ("corgh", "corv", "corh")   # need two traits or more
_LEVEL_CALLS = ("id", "idv", "vm", "ide", "C", "factor")   # what may wrap a level factor
_BASES = ("pol", "leg")                      # covariate bases of a structured dimension
#: structures that give a factor other than trait its own matrix (id / idv on a factor are
#: identities over its levels, so they stay level factors)
_DIM_STRUCTURES = ("us", "diag", "corgh", "corv", "corh", "fa")
_NOT_COLUMNS = frozenset({"TRUE", "FALSE", "True", "False", "None"})
# Bounds that keep parsing fast on absurd input: the parser recurses once per level of
# parentheses (Python's own limit is ~1000 frames), and a*b*c*... expands to 2^k - 1 terms
# (22 factors: 4 million terms and minutes of parsing).
_MAX_DEPTH = 50
_MAX_EXPANDED = 1023
# R operators inside a call (``I(x^2)``, ``I(a %% 2)``) -> the Python that formulaic evaluates
_R_TO_PYTHON = {"^": "**", "%%": "%", "%/%": "//"}


@dataclass(frozen=True)
class Response:
    """Response columns; ``multivariate`` when ``cbind()`` names two or more."""
    traits: tuple[str, ...]
    multivariate: bool


@dataclass(frozen=True)
class FixedTerm:
    """A fixed term: formulaic ``rhs`` fitted once (``traits`` None) or per listed trait."""
    label: str
    rhs: str
    traits: tuple[str, ...] | None
    columns: tuple[str, ...] = ()    # data columns named in ``rhs``


@dataclass(frozen=True)
class FixedSpec:
    """The parsed fixed formula."""
    response: Response
    intercept: bool
    terms: tuple[FixedTerm, ...]


@dataclass(frozen=True)
class Dim:
    """A structured dimension of a random term: on the levels of a data column (``us(site)``,
    ``fa(site, 2)``), or on the coefficients of a covariate basis (``us(pol(Days, 1))``,
    ``diag(leg(dim, 2))``, lme4's ``(1 + Days | Subject)``).

    ``column`` identifies the dimension (the data column, or ``pol(Days, 1)`` / ``coef`` for a
    basis); ``basis`` is None for a factor, ``("pol", k, column)``, ``("leg", k, column)`` or
    ``("raw", intercept, columns)``.
    """
    column: str
    structure: str
    k: int | None
    init: tuple[float, ...] | None
    label: str
    basis: tuple | None = None

    @property
    def data_columns(self) -> tuple[str, ...]:
        if self.basis is None:
            return (self.column,)
        return tuple(self.basis[2]) if self.basis[0] == "raw" else (self.basis[2],)


@dataclass(frozen=True)
class At:
    """``at(column, levels)``: the term covers only records at those levels, one term per level.

    ``levels`` is None for every level (asreml's ``at(site)``), else (text, by_position) pairs:
    ``at(site, 3)`` names the third level, ``at(site, "S3")`` the level S3.
    """
    column: str
    levels: tuple[tuple[str, bool], ...] | None


@dataclass(frozen=True)
class RandomTerm:
    """A random term (or the residual, ``name == "units"``).

    ``structure`` / ``fa_k`` / ``traits`` describe the trait dimension (``idv`` or ``id`` when the
    term has none); ``dims`` the structured dimensions on other factors, ``order`` the order of
    the direct product (``"trait"`` included when the term gives trait a structure), ``at`` the
    level restrictions, ``ide`` an identity twin of a ``vm()`` term, ``sections`` the column of a
    residual ``dsum(~ ... | column)``.
    """
    name: str
    factors: tuple[str, ...]
    structure: str
    fa_k: int | None
    traits: tuple[str, ...] | None
    relmat: str | None
    label: str
    init: tuple[float, ...] | None
    dims: tuple[Dim, ...] = ()
    order: tuple[str, ...] = ()
    at: tuple[At, ...] = ()
    ide: bool = False
    sections: str | None = None
    as_factor: tuple[str, ...] = ()


@dataclass(frozen=True)
class VarianceSpec:
    """The parsed random formula."""
    terms: tuple[RandomTerm, ...]


# ---------------------------------------------------------------- tokens and splitting
class _Tok(NamedTuple):
    kind: str   # "number", "name", "string", "op"
    text: str


_TOKEN = re.compile(r"""\s*(?:
    (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>%[^%\s]*%|\*\*|==|!=|<=|>=|[-+*/^:~=(),<>!|&]))""", re.VERBOSE)


def _depth_step(t: _Tok) -> int:
    return {"(": 1, ")": -1}.get(t.text, 0) if t.kind == "op" else 0


def _tokenize(src: str) -> list[_Tok]:
    toks, pos, depth, src = [], 0, 0, src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise FormulaError(f"cannot read {src[pos:].strip()[:20]!r} in formula {src!r}", term=src)
        toks.append(_Tok(m.lastgroup, m.group(m.lastgroup)))
        depth += _depth_step(toks[-1])
        if depth < 0:
            raise FormulaError(f"unbalanced parentheses: ')' without '(' in {src!r}", term=src)
        if depth > _MAX_DEPTH:
            raise FormulaError(f"parentheses nested more than {_MAX_DEPTH} deep in formula "
                               f"{src[:40]!r}...", term=src[:40])
        pos = m.end()
    if depth:
        raise FormulaError(f"unbalanced parentheses: {depth} '(' not closed in {src!r}", term=src)
    return toks


def _split(toks, seps: tuple[str, ...]) -> list[tuple[str | None, list[_Tok]]]:
    """Split at top-level separators; each piece comes with the separator before it."""
    parts, cur, sep, depth = [], [], None, 0
    for t in toks:
        depth += _depth_step(t)
        if depth == 0 and t.kind == "op" and t.text in seps:
            parts.append((sep, cur))
            cur, sep = [], t.text
        else:
            cur.append(t)
    parts.append((sep, cur))
    return parts


def _close(toks, i: int) -> int:
    """Index of the ')' matching the '(' at ``i`` (the tokenizer checked the balance)."""
    depth = 0
    for j in range(i, len(toks)):
        depth += _depth_step(toks[j])
        if depth == 0:
            return j
    return len(toks) - 1


def _text(toks) -> str:
    """Canonical text, independent of the spacing the user typed."""
    out = []
    for i, t in enumerate(toks):
        prev = toks[i - 1].text if i else None
        if t.kind == "op" and t.text == ",":
            out.append(", ")
        elif t.kind == "op" and t.text not in ("(", ")", ":", "^", "=", "!"):
            unary = t.text in ("+", "-", "~") and prev in (None, "(", ",", "=", "^", "*", "/")
            out.append(t.text if unary else f" {t.text} ")
        else:
            out.append(t.text)
    return "".join(out)


def _unquote(text: str) -> str:
    return text[1:-1] if text[:1] in ("`", "'", '"') else text


def _items(arg) -> list[list[_Tok]]:
    """``c(a, b)`` -> [[a], [b]]; anything else -> [arg]."""
    arg = list(arg)
    if len(arg) > 3 and arg[0].text == "c" and arg[1].text == "(" and _close(arg, 1) == len(arg) - 1:
        return [a for _, a in _split(arg[2:-1], (",",))]
    return [arg]


# ---------------------------------------------------------------- factors and terms
@dataclass(frozen=True)
class _Factor:
    """One ``:``-separated piece: a bare name, a number or a call ``f(args)``."""
    name: str
    toks: tuple[_Tok, ...]
    args: tuple[tuple[str | None, tuple[_Tok, ...]], ...] | None   # (keyword, tokens); None: no call

    @property
    def text(self) -> str:
        return _text(self.toks)

    @property
    def pos(self) -> list[tuple[_Tok, ...]]:
        return [a for k, a in self.args or () if k is None]

    def kw(self, key: str) -> tuple[_Tok, ...] | None:
        return next((a for k, a in self.args or () if k == key), None)

    def mentions_trait(self) -> bool:
        return any(t.kind == "name" and t.text == "trait" for t in self.toks)

    def is_trait_call(self) -> bool:
        """``f(trait, ...)``: a trait structure or ``at(trait, ...)``."""
        return bool(self.pos) and [t.text for t in self.pos[0]] == ["trait"]

    def check_args(self, n_pos: int, keywords: tuple[str, ...], piece: str) -> None:
        extra = [k for k, _ in self.args or () if k is not None and k not in keywords]
        if len(self.pos) > n_pos or extra:
            raise FormulaError(f"unexpected argument in {self.text!r} (term {piece!r})", term=piece)


def _factor(toks: list[_Tok], piece: str) -> _Factor:
    if not toks:
        raise FormulaError(f"empty term in {piece!r}", term=piece)
    if len(toks) == 1 and toks[0].kind in ("name", "number"):
        return _Factor(_unquote(toks[0].text), tuple(toks), None)
    if len(toks) >= 3 and toks[0].kind == "name" and toks[1].text == "(" and _close(toks, 1) == len(toks) - 1:
        args = []
        for _, arg in _split(toks[2:-1], (",",)) if len(toks) > 3 else []:
            if not arg:
                raise FormulaError(f"empty argument in {_text(toks)!r}", term=_text(toks))
            key = arg[0].text if len(arg) > 2 and arg[0].kind == "name" and arg[1].text == "=" else None
            args.append((key, tuple(arg[2:] if key else arg)))
        return _Factor(toks[0].text, tuple(toks), tuple(args))
    raise FormulaError(f"cannot read {_text(toks)!r} as a model term (wrap arithmetic in I(...))",
                       term=_text(toks))


def _sides(formula, what: str, lhs_needed: bool) -> tuple[list[_Tok], list[_Tok], str]:
    if not isinstance(formula, str):
        raise FormulaError(f"the {what} formula must be a string, not {type(formula).__name__}",
                           term=str(formula))
    parts = _split(_tokenize(formula), ("~",))
    if len(parts) > 2:
        raise FormulaError(f"more than one '~' in {what} formula {formula!r}", term=formula)
    lhs, rhs = (parts[0][1], parts[1][1]) if len(parts) == 2 else ([], parts[0][1])
    formula = formula.strip()
    if lhs_needed and not lhs:
        raise FormulaError(f"the {what} formula {formula!r} needs a response: 'y ~ ...' or "
                           "'cbind(y1, y2) ~ trait'", term=formula)
    if lhs and not lhs_needed:
        raise FormulaError(f"the {what} formula {formula!r} takes no response: write '~ ...'",
                           term=_text(lhs))
    if not rhs:
        raise FormulaError(f"no terms after '~' in {what} formula {formula!r}", term=formula)
    return lhs, rhs, formula


def _terms(rhs: list[_Tok], piece: str) -> list[tuple[str, list[_Factor], str, bool]]:
    """Top-level terms as (sign, factors, text, written): ``*`` expanded R-style, main
    effects first; ``written`` is False for the pieces an expansion generated."""
    parts, out = _split(rhs, ("+", "-")), []
    for i, (sep, chunk) in enumerate(parts):
        if not chunk and i == 0 and len(parts) > 1 and parts[1][0] == "-":
            continue   # leading unary minus: "~ -1 + x"
        if not chunk:
            raise FormulaError(f"empty term in {piece!r}", term=piece)
        crossed = _split(chunk, ("*",))
        if 2 ** len(crossed) - 1 > _MAX_EXPANDED:
            text = _text(chunk)
            raise FormulaError(f"{text[:60]!r}{'...' if len(text) > 60 else ''} crosses {len(crossed)} "
                               f"groups, which expands to {2 ** len(crossed) - 1} terms (at most "
                               f"{_MAX_EXPANDED}): write the interactions you need with ':'", term=text)
        groups = [[_factor(f, piece) for _, f in _split(g, (":",))] for _, g in crossed]
        for size in range(1, len(groups) + 1):
            for combo in itertools.combinations(groups, size):
                factors = [f for g in combo for f in g]
                text = ":".join(f.text for f in factors)
                if len({f.text for f in factors}) < len(factors):
                    raise FormulaError(f"a factor appears twice in term {text!r}", term=text)
                out.append((sep or "+", factors, text, len(groups) == 1))
    return out


def _columns(toks) -> list[str]:
    """Data columns named in an expression: bare names; a call contributes its first
    positional argument only (the others are options, as in ``poly(x, 2)``)."""
    toks, cols, i = list(toks), [], 0
    while i < len(toks):
        t, nxt = toks[i], toks[i + 1].text if i + 1 < len(toks) else None
        if t.kind == "name" and nxt == "(":
            j = _close(toks, i + 1)
            pos = _factor(toks[i:j + 1], _text(toks)).pos
            cols += _columns(pos[0]) if pos else []
            i = j
        elif t.kind == "name" and nxt != "=" and _unquote(t.text) not in _NOT_COLUMNS:
            cols.append(_unquote(t.text))
        i += 1
    return cols


def _dedupe(items: list, key, piece: str, what: str) -> tuple:
    """Keep the first of duplicated terms; a term the user wrote twice is an error."""
    seen, out = {}, []
    for item, written, text in items:
        if key(item) in seen:
            if written and seen[key(item)]:
                raise FormulaError(f"{what} term {text!r} given twice in {piece!r}", term=text)
            continue
        seen[key(item)] = written
        out.append(item)
    return tuple(out)


# ---------------------------------------------------------------- trait pieces
def _at(f: _Factor, response: Response) -> tuple[tuple[str, ...] | None, str]:
    """``at(trait)``, ``at(trait, y2)``, ``at(trait, "y2")``, ``at(trait, c(y1, y2))``,
    ``at(trait, 2)`` -> (the traits chosen, None for all; canonical label)."""
    if len(f.pos) < 2:
        return None, "at(trait)"
    chosen, piece = [], f.text
    for item in _items(f.pos[1]):
        if len(item) != 1 or item[0].kind == "op":
            raise FormulaError(f"cannot read trait level {_text(item)!r} in {piece!r}", term=piece)
        level = _unquote(item[0].text)
        if item[0].kind == "number" and level.isdigit() and 1 <= int(level) <= len(response.traits):
            level = response.traits[int(level) - 1]   # asreml's at(trait, 2): the second trait
        if level not in response.traits:
            raise FormulaError(f"trait {level!r} in {piece!r} is not a response; the traits are "
                               f"{', '.join(response.traits)}", term=level)
        if level in chosen:
            raise FormulaError(f"trait {level!r} given twice in {piece!r}", term=piece)
        chosen.append(level)
    sub = tuple(t for t in response.traits if t in chosen)
    return sub, f"at(trait, {sub[0] if len(sub) == 1 else 'c(' + ', '.join(sub) + ')'})"


def _init(arg, piece: str) -> tuple[float, ...] | None:
    """``init=c(1, .5, 2)`` or ``init=0.3`` -> floats (their count is checked by structures)."""
    if arg is None:
        return None
    values = []
    for item in _items(arg):
        try:
            if not all(t.kind == "number" or t.text in "+-" for t in item):
                raise ValueError
            values.append(float("".join(t.text for t in item)))
        except ValueError:
            raise FormulaError(f"init= takes numbers, e.g. init=c(1, 0.5, 2); got {_text(arg)!r} "
                               f"in {piece!r}", term=piece) from None
    return tuple(values)


def _structure(f: _Factor, response: Response, piece: str):
    """A trait structure call -> (structure, fa_k, traits or None, init, label)."""
    if f.name not in STRUCTURES + ("at",):
        raise FormulaError(f"unknown variance structure {f.text!r}; known: {', '.join(STRUCTURES)} "
                           "(and at(trait))", term=f.text)
    k, traits, label = None, None, f"{f.name}(trait)"
    if f.name == "fa":
        f.check_args(2, ("k", "init"), piece)
        kt = f.kw("k") or (f.pos[1] if len(f.pos) > 1 else None)
        if kt is None or len(kt) != 1 or not kt[0].text.isdigit() or int(kt[0].text) < 1:
            raise FormulaError(f"{f.text!r} needs the number of factors k >= 1, e.g. fa(trait, 1)",
                               term=f.text)
        k = int(kt[0].text)
        label = f"fa(trait, {k})"
    else:
        f.check_args(2 if f.name == "at" else 1, () if f.name == "id" else ("init",), piece)
    if f.name == "at":
        traits, label = _at(f, response)
    # at(trait) is asreml's diag(trait); id(trait) gets a scale, as asreml gives one to a
    # random term made only of correlation models, so it is idv(trait)
    structure = {"at": "diag", "id": "idv"}.get(f.name, f.name)
    t = len(traits or response.traits)
    if structure in _CORRELATION and t < 2:
        raise FormulaError(f"{f.text!r} models correlations and needs two traits or more", term=f.text)
    if k is not None and k >= t:
        raise FormulaError(f"{f.text!r}: k = {k} factors must be fewer than the {t} traits", term=f.text)
    return structure, k, traits, _init(f.kw("init"), piece), label


def _trait_part(factors: list[_Factor], response: Response, text: str) -> _Factor | None:
    """The one factor of a term that mentions ``trait`` (None if none)."""
    tparts = [f for f in factors if f.mentions_trait()]
    if tparts and not response.multivariate:
        raise FormulaError(f"{text!r} uses 'trait', which needs a multivariate response "
                           "'cbind(y1, y2, ...) ~ ...'", term=text)
    if len(tparts) > 1:
        raise FormulaError(f"'trait' appears more than once in {text!r}", term=text)
    return tparts[0] if tparts else None


# ---------------------------------------------------------------- fixed formula
def _response(lhs: list[_Tok]) -> Response:
    f = _factor(lhs, _text(lhs))
    if f.args is None and lhs[0].kind == "name":
        return Response((f.name,), False)
    if f.name != "cbind" or f.args is None:
        raise FormulaError(f"the response {f.text!r} must be a column name or cbind(y1, y2, ...)",
                           term=f.text)
    names = []
    for key, arg in f.args:
        if key is not None or len(arg) != 1 or arg[0].kind != "name":
            raise FormulaError(f"cbind() takes column names; {_text(arg)!r} is not one", term=f.text)
        if _unquote(arg[0].text) in names:
            raise FormulaError(f"column {_unquote(arg[0].text)!r} given twice in {f.text!r}", term=f.text)
        names.append(_unquote(arg[0].text))
    if not names:
        raise FormulaError("cbind() needs at least one column name", term=f.text)
    return Response(tuple(names), len(names) > 1)


def _fixed_term(factors: list[_Factor], response: Response, text: str) -> FixedTerm:
    tpart = _trait_part(factors, response, text)
    rest = [f for f in factors if f is not tpart]
    traits, label = None, []
    if tpart is not None:
        if tpart.args is not None and not (tpart.name == "at" and tpart.is_trait_call()):
            raise FormulaError(f"{tpart.text!r} in {text!r}: a fixed term uses trait only as 'trait' "
                               "or 'at(trait, ...)'", term=tpart.text)
        if tpart.args is not None:
            tpart.check_args(2, (), text)
        sub, at_label = _at(tpart, response)
        traits, label = sub or response.traits, ["trait" if tpart.args is None else at_label]
    if any(f.toks[0].kind == "number" for f in factors):
        raise FormulaError(f"a number cannot be part of term {text!r} (only '1' or '0' alone)", term=text)
    cols = tuple(dict.fromkeys(c for f in rest for c in _columns(f.toks)))
    return FixedTerm(":".join(label + [f.text for f in rest]),
                     ":".join(_python(f.toks) for f in rest) or "1", traits, cols)


def _python(toks) -> str:
    """Text of a fixed factor for formulaic, which evaluates calls as Python: R's ``^`` (a
    factor can hold it only inside a call, where R reads it as a power), ``%%`` and ``%/%``
    become ``**``, ``%`` and ``//``; the label keeps the text as written."""
    return _text([_Tok("op", _R_TO_PYTHON[t.text]) if t.kind == "op" and t.text in _R_TO_PYTHON else t
                  for t in toks])


def parse_fixed(formula: str) -> FixedSpec:
    """Parse the fixed formula ``response ~ terms``.

    Parameters
    ----------
    formula : str
        ``"y ~ 1 + sex"`` or ``"cbind(y1, y2) ~ trait + at(trait):sex + x"``.

    Returns
    -------
    FixedSpec
        Response, intercept flag and the fixed terms in the order written (``*`` expanded).
        Inside a call R's operators become the Python that formulaic evaluates
        (``I(x^2)`` -> ``I(x ** 2)`` in ``rhs``; the label keeps ``I(x^2)``).

    Raises
    ------
    FormulaError
        With ``.term`` the offending piece (as do the other parsers); also for a crossing
        that expands to more than 1023 terms (``a*b*...`` of 11 groups) and for parentheses
        nested more than 50 deep.
    """
    lhs, rhs, piece = _sides(formula, "fixed", True)
    response = _response(lhs)
    intercept, items = not response.multivariate, []
    for sign, factors, text, written in _terms(rhs, piece):
        if len(factors) == 1 and factors[0].toks[0].kind == "number" and text in ("0", "1"):
            if text == "1" and sign == "+" and response.multivariate:
                raise FormulaError(f"'1' in multivariate formula {formula!r}: write 'trait' for a "
                                   "mean per trait", term="1")
            intercept = (text == "1") == (sign == "+") and not response.multivariate
            continue
        if sign == "-":
            raise FormulaError(f"removing terms ('- {text}') is not supported", term=text)
        items.append((_fixed_term(factors, response, text), written, text))
    key = lambda t: (frozenset(t.rhs.split(":")), t.traits)  # noqa: E731  (sex:x is x:sex)
    return FixedSpec(response, intercept, _dedupe(items, key, piece, "fixed"))


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
        if f.name == "fa":
            raise FormulaError(f"{f.text!r}: fa() on a covariate basis is not supported", term=f.text)
        ident, basis = _basis(f.pos[0], f, text)
        return Dim(ident, f.name, None, _init(f.kw("init"), text), f"{f.name}({ident})", basis)
    if not f.pos or len(f.pos[0]) != 1 or f.pos[0][0].kind not in ("name", "string"):
        raise FormulaError(f"cannot read {f.text!r} in {text!r}: expected {f.name}(factor"
                           f"{', k' if f.name == 'fa' else ''})", term=f.text)
    col = _unquote(f.pos[0][0].text)
    k = None
    if f.name == "fa":
        f.check_args(2, ("k", "init"), text)
        kt = f.kw("k") or (f.pos[1] if len(f.pos) > 1 else None)
        if kt is None or len(kt) != 1 or not kt[0].text.isdigit() or int(kt[0].text) < 1:
            raise FormulaError(f"{f.text!r} needs the number of factors k >= 1, e.g. fa({col}, 1)",
                               term=f.text)
        k = int(kt[0].text)
    else:
        f.check_args(1, ("init",), text)
    label = f"fa({col}, {k})" if k is not None else f"{f.name}({col})"
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
        elif f.args is not None and f.name in _DIM_STRUCTURES:
            dims.append(_dim(f, text))
            order.append(dims[-1].column)
            name_parts.append(dims[-1].label if dims[-1].structure == "fa" else dims[-1].column)
        elif f.args is not None and f.name in _BASES:
            raise FormulaError(f"{f.text!r} in {text!r}: give the covariate basis a structure, e.g. "
                               f"us({f.text}) or diag({f.text})", term=f.text)
        elif f.args is not None and f.name == "rr":
            raise FormulaError(f"{f.text!r} in {text!r}: reduced-rank rr() models are not supported yet "
                               "(they need the factor formulation of the mixed-model equations); "
                               "fa(factor, k) fits loadings plus specific variances", term=f.text)
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
        scaled = any(d.structure != "id" for d in dims)
        structure, k, traits, init, tlabel = ("id" if scaled else "idv"), None, None, None, None
    if not levels:
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
    from ._bars import split_bars

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
    key = lambda t: (frozenset(t.factors), frozenset(d.column for d in t.dims), t.at, t.ide)  # noqa: E731
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


def _lattice_residual(rhs, response: Response, piece: str) -> RandomTerm | None:
    """``ar1(col):ar1(row)``, ``id(col):ar1(row)``, ``ar1(row)``: a spatial residual on the
    field lattice (mvreml.lattice); None when the residual is not of that form."""
    if len(_split(rhs, ("+", "-"))) != 1:
        return None
    factors = [_factor(f, piece) for _, f in _split(rhs, (":",))]
    if not any(f.name == "ar1" and f.args is not None for f in factors):
        return None
    if any(f.name == "units" for f in factors):
        raise FormulaError(f"the residual {piece!r}: a spatial residual is written on the lattice "
                           "factors alone, e.g. ar1(col):ar1(row) (units is implied)", term=piece)
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
    if response.multivariate:
        raise FormulaError(f"the residual {piece!r}: spatial residuals are for one trait; several traits "
                           "on a lattice are not supported yet", term=piece)
    label = ":".join(d.label for d in dims)
    return RandomTerm("units", (), "lattice", None, None, None, label, None, dims=tuple(dims),
                      order=tuple(d.column for d in dims))


def _dsum(f: _Factor, response: Response, piece: str) -> RandomTerm:
    """``dsum(~ units | site)``: the inner residual structure, once per level of site."""
    if f.args is None or len(f.pos) != 1:
        raise FormulaError(f"cannot read {piece!r}: expected dsum(~ units | factor)", term=piece)
    if f.kw("levels") is not None:
        raise FormulaError(f"{piece!r}: dsum(..., levels=) with different structures for different "
                           "sections is not supported yet; dsum(~ units | site) gives every section "
                           "the same structure", term=piece)
    f.check_args(1, (), piece)
    sides = _split(list(f.pos[0]), ("|",))
    if len(sides) != 2 or len(sides[1][1]) != 1 or sides[1][1][0].kind not in ("name", "string"):
        raise FormulaError(f"cannot read {piece!r}: expected dsum(~ units | factor), one factor "
                           "after '|'", term=piece)
    col = _unquote(sides[1][1][0].text)
    inner = _text(sides[0][1])
    if not inner.lstrip().startswith("~"):
        raise FormulaError(f"cannot read {piece!r}: the structure inside dsum() is a formula, "
                           f"dsum(~ units | {col})", term=piece)
    term = parse_residual(inner, response)
    if term.sections is not None:
        raise FormulaError(f"{piece!r}: dsum() cannot be nested", term=piece)
    return replace(term, sections=col, label=f"dsum({inner.strip()} | {col})")


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
