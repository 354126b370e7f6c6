"""The values :class:`mvreml.Model` returns at one parameter value: :class:`Evaluation`
(log L, score, AI) and :class:`Solution` (fixed effects, BLUPs, PEV); public through
``mvreml.Evaluation`` / ``mvreml.Solution``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Evaluation", "Solution"]


@dataclass(frozen=True)
class Evaluation:
    """The REML log-likelihood and its derivatives at one parameter value.

    Attributes
    ----------
    loglik : float
        The REML log-likelihood (mvreml's constant: ``Result.loglik``).
    score : ndarray (n_params,)
        d log L / d theta.
    ai : ndarray (n_params, n_params)
        The average-information matrix (minus the expected Hessian, approximately).
    names : tuple of str
        The parameters' labels, in the order of theta.
    """

    loglik: float
    score: np.ndarray
    ai: np.ndarray
    names: tuple


@dataclass(frozen=True)
class Solution:
    """The mixed-model equations solved at one parameter value.

    Attributes
    ----------
    fixef : ndarray (p,)
        Fixed effects (BLUE), in the order of ``fixef_names``.
    fixef_se : ndarray (p,)
        Their standard errors, sqrt(diag of the fixed block of C^-1).
    fixef_names : list of str
    blups : dict
        Term name -> ndarray (q x c): the BLUPs of its levels (rows) and of its traits or
        coefficients (columns, named by ``columns[term]``).
    pev : dict
        Term name -> ndarray (q x c): the prediction error variances of the BLUPs.
    levels, columns : dict
        Term name -> the labels of the rows / columns of its BLUP matrix.
    residuals : ndarray (n x t)
        y - X b - Z u per unit and trait, NaN where y is missing (and for dropped rows).
    loglik : float
        The REML log-likelihood at theta.
    """

    fixef: np.ndarray
    fixef_se: np.ndarray
    fixef_names: list
    blups: dict
    pev: dict
    levels: dict
    columns: dict
    residuals: np.ndarray
    loglik: float
