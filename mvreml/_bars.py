"""lme4's random-effect bars in ``random=``: ``(1 | g)``, ``(1 + x | g)``, ``(x || g)``, and
asreml's ``str(~ g + x:g, ~ us(2):id(g))``.

For users who come from lme4: ``(1 + x | g)`` is a random intercept and slope per level of g
with an unstructured 2 x 2 covariance (asreml's ``str(~ g + x:g, ~ us(2):id(g))``), here a
``us`` structure on the raw basis (1, x); ``(0 + x | g)`` a slope alone; ``(x || g)`` lme4's
uncorrelated form, the two separate terms ``g`` and ``x:g``. The grouping side is a factor
(``g``) or an interaction of factors (``g:h``).
"""
from __future__ import annotations

from .errors import FormulaError
from .formula import Dim, RandomTerm, Response, _split, _text, _Tok, _unquote


def _is_bar(chunk) -> bool:
    if len(chunk) < 3 or chunk[0].text != "(" or chunk[-1].text != ")":
        return False
    depth = 0
    for i, t in enumerate(chunk):
        depth += {"(": 1, ")": -1}.get(t.text, 0) if t.kind == "op" else 0
        if depth == 0 and i < len(chunk) - 1:
            return False          # "(a) + ..." is not one parenthesised piece
    return any(t.kind == "op" and t.text == "|" for t in chunk)


def _names(toks, what: str, piece: str) -> list[str]:
    if not toks:
        raise FormulaError(f"empty {what} in {piece!r}", term=piece)
    out = []
    for _, part in _split(list(toks), (":",)):
        if len(part) != 1 or part[0].kind != "name":
            raise FormulaError(f"{_text(part)!r} in {piece!r}: the {what} of a bar term is a column "
                               f"name", term=piece)
        out.append(_unquote(part[0].text))
    return out


def _bar_term(chunk, response: Response, piece: str) -> list[RandomTerm]:
    text = _text(chunk)
    if response.multivariate:
        raise FormulaError(f"{text!r}: lme4 bar terms are for one trait; with several traits write "
                           "us(trait):us(pol(x, 1)):g style terms", term=text)
    inner = chunk[1:-1]
    sides = _split(inner, ("|",))
    double = len(sides) == 3 and not sides[1][1]
    if len(sides) != 2 and not double:
        raise FormulaError(f"cannot read {text!r}: expected (terms | group) or (terms || group)", term=text)
    lhs, group_toks = sides[0][1], sides[-1][1]
    group = _names(group_toks, "grouping factor", text)
    intercept, covariates = True, []
    for sep, part in _split(lhs, ("+", "-")):
        if not part:
            continue
        ptxt = _text(part)
        if ptxt in ("0", "1"):
            intercept = (ptxt == "1") == (sep != "-")
            continue
        if sep == "-":
            raise FormulaError(f"'- {ptxt}' is not supported in {text!r}", term=text)
        covariates += _names(part, "covariate", text)
    gname = ":".join(group)
    if double:
        terms = []
        if intercept:
            terms.append(RandomTerm(gname, tuple(group), "idv", None, None, None, gname, None,
                                    as_factor=tuple(group)))
        for c in covariates:
            # a slope per level of the group: the covariate multiplies Z (design.py)
            terms.append(RandomTerm(f"{c}:{gname}", (c,) + tuple(group), "idv", None, None, None,
                                    f"{c}:{gname}", None, as_factor=tuple(group)))
        return terms
    if not covariates:
        return [RandomTerm(gname, tuple(group), "idv", None, None, None, gname, None, as_factor=tuple(group))]
    basis = ("raw", intercept, tuple(covariates))
    size = len(covariates) + intercept
    structure = "us" if size > 1 else "diag"
    dim = Dim("coef", structure, None, None, f"{structure}(coef)", basis)
    return [RandomTerm(gname, tuple(group), "id", None, None, None, text, None, dims=(dim,),
                       order=("coef",), as_factor=tuple(group))]


def _str_term(chunk, response: Response, piece: str) -> RandomTerm:
    """asreml's ``str(~ g + x:g, ~ us(2):id(g))``: intercept and slopes of g with one 2 x 2
    (or diag) matrix, i.e. lme4's ``(1 + x | g)``; ``vm(g, ped)`` in place of ``id(g)`` too."""
    from .formula import _factor, _level

    text = _text(chunk)
    f = _factor(list(chunk), piece)
    if len(f.pos) != 2 or f.args is None or any(k for k, _ in f.args):
        raise FormulaError(f"cannot read {text!r}: expected str(~ g + x:g, ~ us(2):id(g))", term=text)
    terms_t, struct_t = (list(a) for a in f.pos)
    if not terms_t or terms_t[0].text != "~" or not struct_t or struct_t[0].text != "~":
        raise FormulaError(f"cannot read {text!r}: both arguments of str() are formulas (~ ...)", term=text)
    intercept, covariates, groups = False, [], set()
    for _, part in _split(terms_t[1:], ("+",)):
        names = _names(part, "term", text)
        groups.add(names[-1])
        if len(names) == 1:
            intercept = True
        elif len(names) == 2:
            covariates.append(names[0])
        else:
            raise FormulaError(f"{text!r}: str() terms are g or x:g", term=text)
    if len(groups) != 1:
        raise FormulaError(f"{text!r}: every term of str() must end in the same factor (got "
                           f"{', '.join(sorted(groups))})", term=text)
    g = groups.pop()
    pieces = [_factor(p, piece) for _, p in _split(struct_t[1:], (":",))]
    if len(pieces) != 2 or pieces[0].name not in ("us", "diag") or pieces[0].args is None:
        raise FormulaError(f"{text!r}: the structure of str() is us(n):id(g), diag(n):id(g) or "
                           "us(n):vm(g, ped)", term=text)
    n = len(covariates) + intercept
    size = [t.text for t in pieces[0].pos[0]] if pieces[0].pos else []
    if size != [str(n)]:
        raise FormulaError(f"{text!r}: {pieces[0].text} must match the {n} terms of str()", term=text)
    col, relmat, _, _, _ = _level(pieces[1], text)
    if col != g:
        raise FormulaError(f"{text!r}: the structure's factor {col!r} is not the terms' {g!r}", term=text)
    dim = Dim("coef", pieces[0].name, None, None, f"{pieces[0].name}(coef)",
              ("raw", intercept, tuple(covariates)))
    return RandomTerm(g, (g,), "id", None, None, relmat, text, None, dims=(dim,), order=("coef",),
                      as_factor=(g,))


def split_bars(rhs, response: Response, piece: str):
    """(the random formula without its bar and str() terms, [(RandomTerm, written, text), ...])."""
    rest: list[_Tok] = []
    items = []
    for sep, chunk in _split(list(rhs), ("+", "-")):
        if chunk and chunk[0].text == "str" and len(chunk) > 2 and chunk[1].text == "(":
            items.append((_str_term(chunk, response, piece), True, _text(chunk)))
            continue
        if _is_bar(chunk):
            if sep == "-":
                raise FormulaError(f"'- {_text(chunk)}' is not supported", term=_text(chunk))
            items += [(t, True, _text(chunk)) for t in _bar_term(chunk, response, piece)]
            continue
        if rest or sep is not None:
            rest.append(_Tok("op", sep or "+"))
        rest += chunk
    if rest and rest[0].kind == "op" and rest[0].text == "+":
        rest = rest[1:]
    return rest, items
