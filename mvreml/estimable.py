"""Is there anything to estimate? Checks on the data and the fixed model made before any
iteration, where a REML estimate cannot exist or cannot be computed in double precision.

* No residual degrees of freedom (N records, rank(X) = p >= N; a single record): the REML
  likelihood is that of the N - p error contrasts, and there are none. Likewise a trait
  whose fixed-effect columns are its own and as many as its records.
* A response the fixed effects fit exactly (a constant, or an exact linear function of the
  covariates): its residuals after the fixed effects are zero, so log L grows without bound
  as its variances shrink (by -(n - p)/2 log s when the trait's covariances are scaled by
  s -> 0) and no maximum exists.
* Weights spanning more than double precision can resolve in the mixed-model equations:
  a record weighted WEIGHT_SPREAD times the median is, to rounding, a known value, and C
  stops being numerically positive definite.

These are properties of y, X and the weights alone, exact, and cheap once the least-squares
residuals of the starting values are known; they are refused with a typed error naming the
trait or the row, rather than reported as a fit whose numbers are meaningless. Weights that
are merely all large or all small are not an error: the residual starting value and scale
follow the median weight (:func:`residual_weight_scale`), as R_i = R0 / w_i says they should.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import DataError, ModelError

EXACT_FIT = 1e-10        # residual norm / response norm at or below which the fit is exact
WEIGHT_SPREAD = 1e10     # largest weight / median weight above which C is not resolvable
WEIGHT_RANGE = 1e100     # a median weight outside [1 / this, this]: squares of R0 overflow


def check_estimable(design, Y: np.ndarray) -> None:
    """Refuse a model whose REML likelihood has no maximum (see the module notes).

    Parameters
    ----------
    design : mvreml.design.Design
    Y : ndarray (n_units x t)
        Residuals after the fixed effects (:func:`mvreml.start.unit_residuals`).

    Raises
    ------
    ModelError
        No residual degrees of freedom, overall or for a trait, or a response that the
        fixed effects fit exactly.
    """
    N, p = design.n_obs, design.p
    if N - p <= 0:
        what = "a single record" if N == 1 else f"{N} records"
        raise ModelError(f"no residual degrees of freedom: {what} and {p} fixed-effect column"
                         f"{'s' if p != 1 else ''} (rank of X) leave N - p = {N - p} error contrasts; REML "
                         "needs more records than fixed effects (drop fixed terms or add data)")
    X = sp.csc_matrix(design.X)
    for k, trait in enumerate(design.traits):
        rows = design.obs_trait == k
        n_k = int(rows.sum())
        on = np.diff(X[rows].indptr) > 0            # columns with a nonzero on this trait
        shared = np.diff(X[~rows].indptr) > 0       # ... and on another trait
        p_k = int(on.sum())
        own = not np.any(on & shared)
        if own and design.t > 1 and n_k - p_k <= 0:
            raise ModelError(f"trait {trait!r} has no residual degrees of freedom: {n_k} records and {p_k} "
                             f"fixed-effect columns of its own; its variances cannot be estimated")
        if n_k <= p_k:
            continue
        r = Y[:, k]
        r = r[~np.isnan(r)]
        y = design.y[rows]
        if np.linalg.norm(r) <= EXACT_FIT * np.linalg.norm(y):
            what = ("is constant" if np.ptp(y) <= EXACT_FIT * np.max(np.abs(y), initial=0.0)
                    else "is an exact linear function of the fixed effects")
            raise ModelError(f"response {trait!r} {what}: nothing varies once the fixed effects are fitted "
                             f"(residual norm {np.linalg.norm(r):.3g}), so log L increases without bound as its "
                             "variances go to zero and no REML estimate exists")


def check_weights(design, data, weights: str | None) -> None:
    """Refuse weights whose spread the mixed-model equations cannot resolve.

    Raises
    ------
    DataError
        A weight above WEIGHT_SPREAD times the median weight, naming its row, or a median
        weight beyond WEIGHT_RANGE (R0 would be of that order, and its squares overflow).
    """
    if weights is None or design.n_units == 0:
        return
    w = design.weights
    med = float(np.median(w))
    if not 1.0 / WEIGHT_RANGE <= med <= WEIGHT_RANGE:
        raise DataError(f"weights column {weights!r} has median {med:.3g}: the residual variance R0 (that of a "
                        f"unit of weight 1) would be of that order, beyond what double precision carries "
                        f"through the likelihood's derivatives; divide the weights by a constant (log L does not "
                        f"change, R0 scales with it)", column=weights)
    i = int(np.argmax(w))
    if w[i] > WEIGHT_SPREAD * med:
        row = design.unit_rows[i] if design.unit_rows is not None else i
        label = data.index[row] if data is not None and row < len(data.index) else row
        raise DataError(f"weights column {weights!r}: row {label!r} has weight {w[i]:.3g}, {w[i] / med:.3g} times "
                        f"the median weight {med:.3g}; beyond a ratio of {WEIGHT_SPREAD:.0e} the record is a "
                        "known value to double precision and the mixed-model equations cannot be factorized "
                        "(give it a smaller weight, or fix its value through the fixed effects)", column=weights)


def residual_weight_scale(design, weights: str | None) -> float:
    """The factor by which the residual's starting value and scale follow the weights.

    The residual covariance of a unit is R0 / w, so unweighted residuals measure R0 / w:
    R0 itself is of the order of their variance times a typical (the median) weight.
    """
    if weights is None or design.n_units == 0:
        return 1.0
    return float(np.median(design.weights))


def scale_residual(block, theta0, scale, c: float, from_init: bool) -> None:
    """Multiply the residual block's starting matrix (unless the user gave it) and its
    parameter scales by c, in place (variances and covariances by c, loadings by sqrt(c))."""
    if c == 1.0 or block.stop == block.start:
        return
    st = block.structure
    if not from_init:
        theta0[block.slice] = np.asarray(st.from_matrix(c * st.matrix(theta0[block.slice])), float)
    factor = {"variance": c, "covariance": c, "loading": np.sqrt(c)}
    scale[block.slice] *= np.array([factor.get(kind, 1.0) for kind in st.kinds()])
