"""Functions of variance components with delta-method standard errors (``Result.vpredict``).

An expression such as ``"animal / (animal + units)"`` or
``"animal[bwt,tarsus] / sqrt(animal[bwt,bwt] * animal[tarsus,tarsus])"`` is parsed with
Python's :mod:`ast` and evaluated over a whitelist of node types only, so no user text is
ever executed. Evaluation carries forward-mode dual numbers: every intermediate value holds
its gradient with respect to the vector of components, so the Jacobian is exact (no step
size to tune) and the delta-method variance is ``g' V g`` with ``V`` the sampling covariance
of the components.

asreml's labelled form ``"h2 ~ V2 / (V1 + V2 + V3)"`` is accepted: the text before ``~``
names the result (it may be written in backticks), the text after it is the expression.

Names in an expression
----------------------
``term``
    the single variance of a term that covers one trait (univariate models, or a term such
    as ``at(trait, 'bwt'):byear`` in a multivariate model). In a term covering several traits
    a bare name is an error, because it would be ambiguous.
a name in backticks
    a term (or trait) whose name is not a Python identifier, quoted as in R:
    `rep:block` / `mother:byear` / `mother:byear`[bwt,tarsus] (backticks included).
``term[a,b]``
    the (a, b) element of the term's trait covariance matrix; ``term[a,b]`` and ``term[b,a]``
    are the same component; ``term[a]`` is shorthand for ``term[a,a]``. Trait names that are
    not Python identifiers can be quoted: ``animal['y.1','y.2']`` (or backticked).
``V1``, ``V2``, ...
    positional names: ``V<i>`` is row ``i`` of ``res.varcomp`` as printed, and
    ``res.summary()`` lists the numbering. That order is mvreml's: the random terms in the
    order the formula writes them, then the residual, each term's rows in its structure's
    order. **ASReml numbers the components in its own order**, which can differ: ASReml-R 4
    numbers the rows of ``vparameters``, whose random terms it sorts by default by their
    number of effects (VSN's ``asv.asreml`` notes call that order "noeff"), and a fixed
    ``units!R`` row may follow. For ``random = ~ vm(animal, ainv) + byear`` it puts
    ``byear`` (34 levels) first, so the gryphon tutorial's ``V2/(V1+V2+V3)`` is the
    heritability there but byear's share (0.150) here, where the heritability (0.4586) is
    ``V1/(V1+V2+V3)``. Renumber an expression copied from ASReml by the summary, or use the
    term names, which do not depend on any order.
    A row that is a correlation (``corgh``, ``corh``...) is the correlation computed from
    the covariance components (same value, same first-order derivative); a parameter shared
    by several elements (``idv``, ``corv``) refers to its first element, which carries the
    same value. Factor-analytic loadings are not functions of the covariance components and
    cannot be named positionally. A term named like ``V1`` takes precedence over the
    positional name.

Allowed: numbers, the names above, ``+ - * / **``, unary ``-``/``+``, parentheses and the
functions ``sqrt``, ``exp``, ``log``. Anything else raises :class:`~mvreml.errors.ExpressionError`.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ExpressionError

__all__ = ["Dual", "ComponentIndex", "evaluate", "split_label", "delta_se"]


class Dual:
    """A value with its gradient with respect to the component vector (forward-mode AD).

    Operations raise :class:`ExpressionError` where the function or its derivative is
    undefined (division by zero, log of a non-positive number, sqrt of a negative number or
    of zero), because the delta method does not apply there.
    """

    __slots__ = ("value", "grad")

    def __init__(self, value: float, grad: np.ndarray):
        self.value = float(value)
        self.grad = grad

    @staticmethod
    def _lift(x, n: int) -> "Dual":
        return x if isinstance(x, Dual) else Dual(float(x), np.zeros(n))

    def __add__(self, other):
        o = Dual._lift(other, self.grad.size)
        return Dual(self.value + o.value, self.grad + o.grad)

    __radd__ = __add__

    def __sub__(self, other):
        o = Dual._lift(other, self.grad.size)
        return Dual(self.value - o.value, self.grad - o.grad)

    def __rsub__(self, other):
        return Dual._lift(other, self.grad.size) - self

    def __neg__(self):
        return Dual(-self.value, -self.grad)

    def __pos__(self):
        return self

    def __mul__(self, other):
        o = Dual._lift(other, self.grad.size)
        return Dual(self.value * o.value, self.grad * o.value + o.grad * self.value)

    __rmul__ = __mul__

    def __truediv__(self, other):
        o = Dual._lift(other, self.grad.size)
        if o.value == 0.0:
            raise ExpressionError("division by zero")
        q = self.value / o.value
        return Dual(q, (self.grad - q * o.grad) / o.value)

    def __rtruediv__(self, other):
        return Dual._lift(other, self.grad.size) / self

    def __pow__(self, other):
        o = Dual._lift(other, self.grad.size)
        u, v = self.value, o.value
        try:
            if not o.grad.any():
                # constant exponent: defined for negative bases when v is an integer
                if u == 0.0 and v < 1.0:
                    raise ExpressionError(f"0 ** {v:g} has no derivative")
                if u < 0.0 and v != int(v):
                    raise ExpressionError(f"negative number ({u:g}) to a non-integer power")
                val = u ** v
                return Dual(val, v * u ** (v - 1.0) * self.grad if v != 0.0 else 0.0 * self.grad)
            if u <= 0.0:
                raise ExpressionError(f"power with a variable exponent of a non-positive base ({u:g})")
            val = u ** v
            return Dual(val, val * (o.grad * math.log(u) + v * self.grad / u))
        except OverflowError:
            raise ExpressionError("overflow in **") from None

    def __rpow__(self, other):
        return Dual._lift(other, self.grad.size) ** self

    def sqrt(self) -> "Dual":
        if self.value <= 0.0:
            raise ExpressionError(f"sqrt of {self.value:g} (no derivative at or below zero)")
        r = math.sqrt(self.value)
        return Dual(r, self.grad / (2.0 * r))

    def exp(self) -> "Dual":
        try:
            e = math.exp(self.value)
        except OverflowError:
            raise ExpressionError(f"exp({self.value:g}) overflows") from None
        return Dual(e, e * self.grad)

    def log(self) -> "Dual":
        if self.value <= 0.0:
            raise ExpressionError(f"log of {self.value:g}")
        return Dual(math.log(self.value), self.grad / self.value)


_FUNCS = {"sqrt": Dual.sqrt, "exp": Dual.exp, "log": Dual.log}
_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a ** b,
}
_POSITIONAL = re.compile(r"^V([1-9][0-9]*)$")


def _varcomp_traits(label: str, term: str, row: pd.Series, traits: list[str]) -> tuple[str, str] | None:
    """Which (trait_1, trait_2) element a varcomp row stands for.

    Uses columns ``trait_1``/``trait_2`` when the table has them; otherwise the trait names
    found in the label after the term name, split on ``!`` and ``:`` (``"Family:trait!density:velocity"``,
    ``"Family:trait!density:!velocity.cor"``, ``"Family:trait!bwt!var"``). A row naming no trait is
    a parameter shared by several elements (idv, corv, corh's correlation): its first element.
    """
    if "trait_1" in row.index and isinstance(row.get("trait_1"), str):
        t2 = row.get("trait_2")
        return row["trait_1"], t2 if isinstance(t2, str) else row["trait_1"]
    if len(traits) == 1:
        return traits[0], traits[0]
    rest = label[len(term):] if label.startswith(term) else label
    pieces = [s[:-4] if s.endswith(".cor") else s for s in re.split(r"[!:]", rest)]
    tokens = [s for s in pieces if s in traits]
    if len(tokens) == 1:
        return tokens[0], tokens[0]
    if len(tokens) == 2:
        return tokens[0], tokens[1]
    if not tokens:
        return (traits[0], traits[0]) if row.get("kind") == "variance" else (traits[1], traits[0])
    return None


@dataclass
class ComponentIndex:
    """Maps the names usable in an expression to positions in the components table.

    Attributes
    ----------
    term_traits : dict
        term -> traits its matrix covers.
    position : dict
        (term, trait_a, trait_b) -> row of the components table, both trait orders.
    positional : list
        For ``V1``, ``V2``...: (label, kind, term, trait_a, trait_b); trait_a is None when the
        row cannot be expressed through the components.
    """

    term_traits: dict
    position: dict
    positional: list

    @classmethod
    def build(cls, components: pd.DataFrame, term_traits: dict, varcomp: pd.DataFrame) -> "ComponentIndex":
        position = {}
        terms = components["term"].to_numpy()
        t1 = components["trait_1"].to_numpy()
        t2 = components["trait_2"].to_numpy()
        for k in range(len(components)):
            position[(terms[k], t1[k], t2[k])] = k
            position[(terms[k], t2[k], t1[k])] = k
        positional = []
        for label, row in varcomp.iterrows():
            term = row["term"]
            pair = _varcomp_traits(str(label), term, row, list(term_traits.get(term, [])))
            kind = row.get("kind", "variance")
            if kind == "loading" or pair is None:
                positional.append((str(label), kind, term, None, None))
            else:
                positional.append((str(label), kind, term, pair[0], pair[1]))
        return cls(dict(term_traits), position, positional)

    def names(self) -> list[str]:
        """Every name an expression may use (for error messages)."""
        out = []
        for term, traits in self.term_traits.items():
            shown = term if term.isidentifier() else f"`{term}`"
            if len(traits) == 1:
                out.append(shown)
            else:
                out += [f"{shown}[{a},{b}]" for i, a in enumerate(traits) for b in traits[: i + 1]]
        out += [f"V{i + 1}" for i, p in enumerate(self.positional) if p[3] is not None]
        return out

    def _unknown(self, what: str) -> ExpressionError:
        return ExpressionError(f"{what}; available: {', '.join(self.names())}")

    def element(self, term: str, a: str, b: str, x: np.ndarray) -> Dual:
        """The (a, b) element of term's matrix as a Dual over the component vector x."""
        if term not in self.term_traits:
            raise self._unknown(f"unknown component {term!r}")
        k = self.position.get((term, a, b))
        if k is None:
            bad = [t for t in (a, b) if t not in self.term_traits[term]]
            raise self._unknown(
                f"{term!r} has no trait {bad[0]!r} (its traits: {', '.join(self.term_traits[term])})"
                if bad else f"{term}[{a},{b}] is not a component")
        g = np.zeros(x.size)
        g[k] = 1.0
        return Dual(x[k], g)

    def name(self, name: str, x: np.ndarray) -> Dual:
        """A bare name: a one-trait term, or a positional ``V<i>``."""
        if name in self.term_traits:
            traits = self.term_traits[name]
            if len(traits) != 1:
                raise ExpressionError(
                    f"{name!r} covers {len(traits)} traits ({', '.join(traits)}): name an element, "
                    f"e.g. {name}[{traits[0]},{traits[0]}] or {name}[{traits[1]},{traits[0]}]")
            return self.element(name, traits[0], traits[0], x)
        m = _POSITIONAL.match(name)
        if m and int(m.group(1)) <= len(self.positional):
            label, kind, term, a, b = self.positional[int(m.group(1)) - 1]
            if a is None:
                raise ExpressionError(
                    f"{name} ({label}) is a {kind} that is not a function of the covariance "
                    f"components; name components as term[trait,trait] instead")
            if kind == "correlation" and a != b:
                return self.element(term, a, b, x) / (
                    self.element(term, a, a, x) * self.element(term, b, b, x)).sqrt()
            return self.element(term, a, b, x)
        raise self._unknown(f"unknown component {name!r}")


def _trait_key(node: ast.AST, names: dict) -> str:
    if isinstance(node, ast.Name):
        return names.get(node.id, node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return str(node.value)
    raise ExpressionError(f"'{_show(node, names)}' is not a trait name (use term[trait,trait])")


# a quoted string (left alone), a backticked name, or a lone backtick (unmatched)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`([^`]*)`|`")


def _mask(text: str) -> tuple[str, dict]:
    """Replace each backticked name by a placeholder identifier the Python parser accepts.

    Returns the masked text and placeholder -> name. The placeholder prefix is grown until it
    occurs nowhere in the text, so it cannot collide with a name the user wrote.
    """
    if "`" not in text:
        return text, {}
    prefix = "_bq"
    while prefix in text:
        prefix += "_"
    names: dict = {}

    def sub(m: re.Match) -> str:
        piece = m.group(0)
        if piece[0] != "`":
            return piece
        if piece == "`":
            raise ExpressionError(f"unmatched backtick in {text!r}")
        name = m.group(1)
        if not name.strip():
            raise ExpressionError(f"empty name between backticks in {text!r}")
        for key, value in names.items():
            if value == name:
                return key
        key = f"{prefix}{len(names)}_"
        names[key] = name
        return key

    return _QUOTED.sub(sub, text), names


def _show(node: ast.AST, names: dict) -> str:
    """Source text of a node, backticked names restored (for messages)."""
    text = ast.unparse(node)
    for key, name in names.items():
        text = text.replace(key, f"`{name}`")
    return text


def split_label(expr: str) -> tuple[str | None, str]:
    """Split asreml's labelled form ``"h2 ~ V1 / (V1 + V2)"`` into ``("h2", "V1 / (V1 + V2)")``.

    Parameters
    ----------
    expr : str
        An expression, with or without a label before ``~``; the label may be backticked.

    Returns
    -------
    (label, expression)
        ``label`` is None when there is no ``~``.

    Raises
    ------
    ExpressionError
        Not a string, more than one ``~``, or nothing on one side of it.
    """
    if not isinstance(expr, str):
        raise ExpressionError(f"an expression must be a non-empty string, got {expr!r}")
    masked, names = _mask(expr)
    if "~" not in masked:
        return None, expr
    if masked.count("~") > 1:
        raise ExpressionError(f"{expr!r} has more than one '~' (write 'label ~ expression')")
    head, body = masked.split("~")
    for key, name in names.items():     # undo the masking: the body is parsed again later
        head, body = head.replace(key, f"`{name}`"), body.replace(key, f"`{name}`")
    label = head.strip()
    if len(label) >= 2 and label[0] == label[-1] == "`":
        label = label[1:-1].strip()
    if not label:
        raise ExpressionError(f"nothing before '~' in {expr!r}: write 'label ~ expression' or "
                              f"the expression alone")
    if not body.strip():
        raise ExpressionError(f"nothing after '~' in {expr!r}: write 'label ~ expression'")
    return label, body.strip()


def _walk(node: ast.AST, index: ComponentIndex, x: np.ndarray, names: dict) -> Dual:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return Dual(node.value, np.zeros(x.size))
    elif isinstance(node, ast.Name):
        return index.name(names.get(node.id, node.id), x)
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        keys = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if 1 <= len(keys) <= 2:
            traits = [_trait_key(k, names) for k in keys]
            return index.element(names.get(node.value.id, node.value.id), traits[0], traits[-1], x)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _walk(node.left, index, x, names), _walk(node.right, index, x, names)
        try:
            return _BINOPS[type(node.op)](left, right)
        except ExpressionError as e:
            raise ExpressionError(f"'{_show(node, names)}' is undefined at the estimates: {e}") from None
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _walk(node.operand, index, x, names)
        return -v if isinstance(node.op, ast.USub) else v
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
          and len(node.args) == 1 and not node.keywords):
        arg = _walk(node.args[0], index, x, names)
        try:
            return _FUNCS[node.func.id](arg)
        except ExpressionError as e:
            raise ExpressionError(f"'{_show(node, names)}' is undefined at the estimates: {e}") from None
    raise ExpressionError(
        f"'{_show(node, names)}' is not allowed in an expression: use numbers, component names, "
        f"term[trait,trait], + - * / **, parentheses and sqrt/exp/log")


def evaluate(expr: str, index: ComponentIndex, x: np.ndarray) -> Dual:
    """Evaluate an expression at the component values ``x``.

    Parameters
    ----------
    expr : str
        The expression (see the module docstring for the names and operations allowed); a
        label before ``~`` (``"h2 ~ V1 / (V1 + V2)"``) is allowed and ignored here.
    index : ComponentIndex
        Names -> positions in ``x``.
    x : ndarray
        Component values (``Result.components.estimate``).

    Returns
    -------
    Dual
        ``.value`` the expression's value, ``.grad`` its gradient with respect to ``x``.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ExpressionError(f"an expression must be a non-empty string, got {expr!r}")
    _, body = split_label(expr)
    masked, names = _mask(body.strip())
    try:
        tree = ast.parse(masked, mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"cannot parse {expr!r}: {e.msg}") from None
    except ValueError as e:     # null bytes (a SyntaxError from Python 3.12 on)
        raise ExpressionError(f"cannot parse {expr!r}: {e}") from None
    except (RecursionError, MemoryError):   # nesting beyond what the parser can hold
        raise ExpressionError(f"{expr[:40]!r}... is nested too deeply to parse") from None
    try:
        return _walk(tree.body, index, np.asarray(x, dtype=float), names)
    except RecursionError:
        raise ExpressionError(f"{expr[:40]!r}... is nested too deeply to evaluate") from None


def delta_se(grad: np.ndarray, vcov: np.ndarray) -> float:
    """Delta-method standard error sqrt(g' V g); NaN when V is not positive semidefinite along g."""
    q = float(grad @ vcov @ grad)
    if q < 0.0:
        # tiny negatives are rounding in a PSD V; larger ones mean V is not a covariance
        return 0.0 if q > -1e-12 * max(1.0, float(np.abs(grad) @ np.abs(vcov) @ np.abs(grad))) else math.nan
    return math.sqrt(q)
