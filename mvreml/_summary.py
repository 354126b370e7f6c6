"""Presentation of a Result: the asreml-R-like summary (text and HTML) and the JSON codec.

The JSON is standard (no NaN/Infinity tokens): non-finite floats are written as the strings
"NaN", "Infinity", "-Infinity" inside float columns and arrays, and as {"__float__": ...}
elsewhere. DataFrames keep their index, column order and dtypes; arrays their shape.
"""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

FORMAT = "mvreml.Result"
_MAX_FIXEF_ROWS = 40
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_POSITIONAL_HEAD = "vpredict names (V<i> = row i above; ASReml may number them differently):"


# ---------------------------------------------------------------------- JSON codec
def _float_name(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _floats_out(arr: np.ndarray) -> list:
    values = arr.astype(float).ravel().tolist()
    for i in np.flatnonzero(~np.isfinite(arr.ravel())):
        values[i] = _float_name(values[i])
    return values


def _values_out(values) -> dict:
    """One column or index: its dtype and a JSON-able list of values."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        out = _floats_out(np.asarray(values))
    elif isinstance(dtype, np.dtype) and dtype.kind in "iub":
        out = np.asarray(values).tolist()
    elif pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        # level labels of big BLUP tables: vectorised, missing -> null
        out = pd.Series(values).astype(object).where(lambda v: v.notna(), None).tolist()
    else:
        out = [None if isinstance(v, float) and math.isnan(v) else encode(v) for v in values.tolist()]
    return {"dtype": str(dtype), "values": out}


def _values_in(spec: dict):
    dtype, values = spec["dtype"], spec["values"]
    try:
        kind = np.dtype(dtype).kind
    except TypeError:  # pandas extension dtypes ("category", "string", ...)
        kind = "O"
    if kind == "f":
        return np.array(values, dtype=object).astype(dtype)
    if kind in "iub":
        return np.array(values, dtype=dtype)
    if kind != "U":   # str columns hold plain strings and nulls; others may hold encoded objects
        values = [decode(v) for v in values]
    try:
        return pd.array(values, dtype=dtype)
    except (TypeError, ValueError):
        return pd.array(values, dtype=object)


def _frame_out(df: pd.DataFrame) -> dict:
    idx = df.index
    if isinstance(idx, pd.RangeIndex):
        index = {"range": [idx.start, idx.stop, idx.step], "name": idx.name}
    else:
        index = dict(_values_out(idx), name=idx.name)
    cols = [dict(_values_out(df.iloc[:, j]), name=encode(name)) for j, name in enumerate(df.columns)]
    return {"__frame__": {"index": index, "columns": cols}}


def _frame_in(spec: dict) -> pd.DataFrame:
    ix = spec["index"]
    if "range" in ix:
        index = pd.RangeIndex(*ix["range"], name=ix["name"])
    else:
        index = pd.Index(_values_in(ix), name=ix["name"])
    data = {j: _values_in(c) for j, c in enumerate(spec["columns"])}
    df = pd.DataFrame(data, index=index)
    df.columns = pd.Index([decode(c["name"]) for c in spec["columns"]])
    return df


def encode(obj):
    """A Python/numpy/pandas object -> JSON-able structure (see the module docstring)."""
    if isinstance(obj, pd.DataFrame):
        return _frame_out(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            values = _floats_out(obj)
        else:
            values = [encode(v) for v in obj.ravel().tolist()]
        return {"__array__": {"dtype": str(obj.dtype), "shape": list(obj.shape), "values": values}}
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else {"__float__": _float_name(float(obj))}
    return obj


def decode(obj):
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1 and "__frame__" in obj:
        return _frame_in(obj["__frame__"])
    if len(obj) == 1 and "__array__" in obj:
        a = obj["__array__"]
        arr = np.array(a["values"], dtype=object).astype(a["dtype"]) if a["values"] else \
            np.zeros(0, dtype=a["dtype"])
        return arr.reshape(a["shape"])
    if len(obj) == 1 and "__float__" in obj:
        return _NONFINITE[obj["__float__"]]
    return {k: decode(v) for k, v in obj.items()}


def json_default(obj):
    """Last resort for json.dumps: numpy scalars that slipped through."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} in a Result is not JSON-serialisable")


# ---------------------------------------------------------------------- summary
def _num(x, spec: str = ".7g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NA"
    return format(float(x), spec)


class Summary:
    """Summary of a Result, printed like asreml-R's ``summary()``.

    Attributes
    ----------
    header : list of (str, str)
        Model, data, likelihood and convergence lines.
    varcomp, fixef : DataFrame
        The tables printed (fixef shortened to its first rows when long).
    diagnostics : list of str
    """

    def __init__(self, res):
        n_p = res.n_obs - res.rank_x
        m = res.model
        state = "converged" if res.converged else "NOT CONVERGED"
        self.header = [
            ("fixed", str(m["fixed"])),
            ("random", str(m["random"]) or "(none)"),
            ("residual", str(m["residual"])),
            ("traits", ", ".join(res.traits)),
            ("data", f"N = {res.n_obs} observations on {res.n_units} units "
                     f"({res.n_dropped} rows dropped); rank(X) = {res.rank_x}"),
            ("log-likelihood", f"{res.loglik:.4f}  (lme4/nlme convention, "
                               f"includes -0.5 (N - p) log(2 pi))"),
            ("log-likelihood (ASReml)", f"{res.loglik_asreml:.4f}  (= loglik + 0.5 (N - p) log(2 pi), "
                                        f"N - p = {n_p})"),
            ("AIC, BIC", f"{res.aic:.4f}, {res.bic:.4f}  (REML; {res.n_varparams} variance "
                         f"parameters; BIC penalty log(N - p))"),
            ("convergence", f"{state} after {res.iterations} iterations: {res.reason}"),
        ]
        vc = res.varcomp
        self.varcomp = pd.DataFrame({
            "component": vc["estimate"], "std.error": vc["std_error"], "z.ratio": vc["z_ratio"],
            "bound": vc["bound"]}, index=vc.index.rename(None))
        fx = res.fixef
        with np.errstate(divide="ignore", invalid="ignore"):
            z = fx["estimate"].to_numpy(dtype=float) / fx["std_error"].to_numpy(dtype=float)
        self.fixef = pd.DataFrame({"estimate": fx["estimate"], "std.error": fx["std_error"],
                                   "z.ratio": z}, index=fx.index.rename(None))
        # vpredict's positional names: V<i> is row i of res.varcomp, shown because ASReml
        # numbers its components in its own order and users port expressions from it
        self.positional = [(f"V{i + 1}", str(label)) for i, label in enumerate(vc.index)]
        self.n_fixef_hidden = max(0, len(self.fixef) - _MAX_FIXEF_ROWS)
        if self.n_fixef_hidden:
            self.fixef = self.fixef.iloc[:_MAX_FIXEF_ROWS]
        self.diagnostics = list(res.diagnostics)

    _FORMATS = {"component": _num, "std.error": _num, "estimate": _num,
                "z.ratio": lambda x: _num(x, ".3f")}

    def _table(self, df: pd.DataFrame) -> str:
        fmt = {c: f for c, f in self._FORMATS.items() if c in df.columns}
        return df.to_string(formatters=fmt) if len(df) else "(none)"

    def _positional_lines(self, width: int = 100) -> list[str]:
        """``V1 = label, V2 = label, ...`` wrapped to ``width``, never inside an item."""
        if not self.positional:
            return []
        lines, line = [_POSITIONAL_HEAD], " "
        for k, (v, label) in enumerate(self.positional):
            item = f"{v} = {label}" + ("," if k + 1 < len(self.positional) else "")
            if len(line) + 1 + len(item) > width and line.strip():
                lines.append(line)
                line = " "
            line += " " + item
        return lines + [line]

    @property
    def text(self) -> str:
        """The summary as plain text."""
        width = max(len(k) for k, _ in self.header)
        lines = ["mvreml REML fit"] + [f"  {k:<{width}}  {v}" for k, v in self.header]
        lines += ["", "Variance components (bound: P positive, B boundary/singular, F fixed, C constrained, "
                      "U unconstrained)",
                  self._table(self.varcomp)] + self._positional_lines()
        lines += ["", "Fixed effects", self._table(self.fixef)]
        if self.n_fixef_hidden:
            lines.append(f"... {self.n_fixef_hidden} more fixed effects: see res.fixef")
        if self.diagnostics:
            lines += ["", "Diagnostics"] + [f"  - {d}" for d in self.diagnostics]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th><td style='text-align:left'>"
                       f"{esc(v)}</td></tr>" for k, v in self.header)
        fmt = {c: f for c, f in self._FORMATS.items()}
        parts = [f"<div><strong>mvreml REML fit</strong><table>{rows}</table>",
                 "<p><strong>Variance components</strong> (bound: P positive, B boundary/singular, "
                 "F fixed, C constrained, U unconstrained)</p>",
                 self.varcomp.to_html(formatters={c: f for c, f in fmt.items() if c in self.varcomp}),
                 f"<p>{esc(_POSITIONAL_HEAD)} "
                 + ", ".join(f"{esc(v)} = {esc(label)}" for v, label in self.positional) + "</p>",
                 "<p><strong>Fixed effects</strong></p>",
                 self.fixef.to_html(formatters={c: f for c, f in fmt.items() if c in self.fixef})]
        if self.n_fixef_hidden:
            parts.append(f"<p>... {self.n_fixef_hidden} more fixed effects: see res.fixef</p>")
        if self.diagnostics:
            parts.append("<p><strong>Diagnostics</strong></p><ul>"
                         + "".join(f"<li>{esc(d)}</li>" for d in self.diagnostics) + "</ul>")
        return "".join(parts) + "</div>"

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__
