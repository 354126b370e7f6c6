"""lme4's random-effect bars in ``random=``: ``(1 | g)``, ``(1 + x | g)``, ``(x || g)``.

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


def split_bars(rhs, response: Response, piece: str):
    """(the random formula without its bar terms, [(RandomTerm, written, text), ...])."""
    rest: list[_Tok] = []
    items = []
    for sep, chunk in _split(list(rhs), ("+", "-")):
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
