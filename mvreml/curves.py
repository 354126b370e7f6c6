"""Random curves of a random regression: each level's coefficients times the basis at given x."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import basis
from .errors import ModelError


def predict_curve(result, term: str, x) -> pd.DataFrame:
    """The random curve of every level of ``term`` at the covariate values ``x``.

    Parameters
    ----------
    result : Result
    term : str
        A random term on one covariate basis, e.g. ``"Subject"`` of ``(1 + Days | Subject)`` or
        ``"leg(dim, 2):animal"`` of ``us(leg(dim, 2)):vm(animal, ped)``.
    x : array-like
        Covariate values (for lme4's raw basis: values of its covariates, n x covariates).

    Returns
    -------
    DataFrame
        One row per (level, x): columns level, x, value (the BLUP curve B(x) u), std_error
        (sqrt of B(x) PEV B(x)', from the level's block of C^-1).
    """
    bases = result.model.get("bases", {}).get(term)
    if not bases:
        raise ModelError(f"term {term!r} has no covariate basis (pol(), leg() or an lme4 bar term); "
                         f"terms with one: {', '.join(result.model.get('bases', {})) or 'none'}")
    coefs = result.term_traits[term]
    params = next(iter(bases.values()))
    if len(bases) != 1 or coefs != list(basis.level_names(params, params.get("columns", ()))):
        raise ModelError(f"predict_curve needs a term whose only structured dimension is its basis; "
                         f"{term!r} has the compound levels {coefs}")
    xv = np.asarray(x, dtype=float)
    B = basis.evaluate(params, xv)
    table = result.blup(term)
    U = table[coefs].to_numpy()
    c = len(coefs)
    pev = np.zeros((len(table), c, c))
    for i, a in enumerate(coefs):
        pev[:, i, i] = table[f"pev_{a}"].to_numpy()
        for j in range(i):
            v = table[f"pev_{a}:{coefs[j]}"].to_numpy()
            pev[:, i, j] = pev[:, j, i] = v
    values = U @ B.T                                       # levels x points
    var = np.einsum("pi,lij,pj->lp", B, pev, B)
    xs = xv if xv.ndim == 1 else [tuple(r) for r in xv.reshape(len(xv), -1)]
    n_lev, n_x = values.shape
    return pd.DataFrame({"level": np.repeat(table.index.to_numpy(), n_x), "x": list(xs) * n_lev,
                         "value": values.ravel(), "std_error": np.sqrt(np.clip(var, 0, None)).ravel()})
