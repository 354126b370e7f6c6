"""mvreml: multivariate linear mixed models by AI-REML on sparse mixed-model equations.

The public contract (see README):

>>> import mvreml
>>> res = mvreml.fit("cbind(velocity, density) ~ trait",
...                  random="~ us(trait):Family + diag(trait):Block",
...                  residual="~ units:us(trait)", data=df)
>>> res.covariance("Family"); res.vpredict("Family[velocity,density] / ..."); mvreml.lrt(m3, m4)
>>> pw = mvreml.pairwise("cbind(T1, ..., T6) ~ trait", ..., store="fits/")   # 21 sub-models
>>> mvreml.fit("cbind(T1, ..., T6) ~ trait", ..., init=pw.init)

Embedding programs build a model from arrays: ``mvreml.Model(y, X, random=[mvreml.Random(Z,
mvreml.structures.US(2), Kinv=Ainv, name="animal")])`` (see :mod:`mvreml.model`).

Submodules are imported on first use so that ``import mvreml`` stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["fit", "plan", "Plan", "fit_many", "pairwise", "lrt", "Result", "Pedigree", "errors", "relmat", "structures", "Model",
           "Random", "Residual", "Evaluation", "Solution", "__version__"]

_LAZY = {
    "fit": ("mvreml.api", "fit"),
    "plan": ("mvreml.planning", "plan"),        # the forecast of a fit: sizes, memory, time
    "Plan": ("mvreml._forecast", "Plan"),
    "fit_many": ("mvreml.many", "fit_many"),    # many fits, serial or on dask.distributed
    "pairwise": ("mvreml.pairs", "pairwise"),   # all univariate + bivariate sub-models, combined
    "lrt": ("mvreml.results", "lrt"),
    "Result": ("mvreml.results", "Result"),
    "Pedigree": ("mvreml.pedigree", "Pedigree"),
    "errors": ("mvreml.errors", None),
    "relmat": ("mvreml.relmat", None),          # mvreml.relmat.matrix / inverse / read_giv
    "structures": ("mvreml.structures", None),  # US, Diag, Corgh, FA, Product, ...
    "Model": ("mvreml.model", "Model"),         # the array route (embedding)
    "Random": ("mvreml.model", "Random"),
    "Residual": ("mvreml.model", "Residual"),
    "Evaluation": ("mvreml.model", "Evaluation"),
    "Solution": ("mvreml.model", "Solution"),
}


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mvreml' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
