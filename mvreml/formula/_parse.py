"""Tokens, splitting that respects parentheses and quotes, factors and terms, and the trait
pieces (``at(trait, ...)``, trait structures) shared by the fixed and variance formulas."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import NamedTuple

from mvreml.errors import FormulaError

from .specs import FixedSpec, RandomTerm, Response, VarianceSpec  # noqa: F401

#: Covariance structures known to mvreml (on the traits or on any factor).
STRUCTURES = ("us", "diag", "idv", "id", "corgh", "corv", "corh", "fa")
_CORRELATION = ("corgh", "corv", "corh")   # need two traits or more
_LEVEL_CALLS = ("id", "idv", "vm", "ide", "C", "factor")   # what may wrap a level factor
_BASES = ("pol", "leg")                      # covariate bases of a structured dimension
#: structures that give a factor other than trait its own matrix (id / idv on a factor are
#: identities over its levels, so they stay level factors)
_DIM_STRUCTURES = ("us", "diag", "corgh", "corv", "corh", "fa", "rr")
_NOT_COLUMNS = frozenset({"TRUE", "FALSE", "True", "False", "None"})
# Bounds that keep parsing fast on absurd input: the parser recurses once per level of
# parentheses (Python's own limit is ~1000 frames), and a*b*c*... expands to 2^k - 1 terms
# (22 factors: 4 million terms and minutes of parsing).
_MAX_DEPTH = 50
_MAX_EXPANDED = 1023
# R operators inside a call (``I(x^2)``, ``I(a %% 2)``) -> the Python that formulaic evaluates
_R_TO_PYTHON = {"^": "**", "%%": "%", "%/%": "//"}


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


