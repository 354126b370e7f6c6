"""The fixed formula: ``response ~ terms``."""
from __future__ import annotations


from mvreml.errors import FormulaError

from ._parse import (_Factor, _Tok, _MAX_EXPANDED, _R_TO_PYTHON, _at, _columns, _dedupe, _factor, _sides, _split,  # noqa: F401
                     _terms, _text, _trait_part, _unquote)
from .specs import FixedSpec, FixedTerm, Response

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


