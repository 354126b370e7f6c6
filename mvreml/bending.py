"""Weighted bending of a symmetric matrix to positive definite (Jorjani, Klei & Emanuelson 2003).

A covariance matrix put together from separate estimates (univariate and bivariate fits)
need not be positive definite. Unweighted bending (raising the eigenvalues) moves every
element alike; weighted bending moves the well-estimated elements least. The iteration is

    B_{n+1} = B_n - (B_n - U_n D_n U_n') o W,

with U_n D_n U_n' the eigendecomposition of B_n whose eigenvalues below ``floor`` are raised to
``floor``, ``o`` the elementwise product and W the weights of change, scaled to a largest
value of 1: W_ij = 1 / n_ij (n_ij the records behind element ij) or W_ij = var(b_ij) (its
sampling variance), so that an element backed by many records or a small sampling variance
changes little. W = 1 everywhere is unweighted bending in one step. A weight 0 holds an
element (the unit diagonal of a correlation matrix).

Reference: Jorjani H, Klei L, Emanuelson U (2003). A simple method for weighted bending of
genetic (co)variance matrices. J Dairy Sci 86:677-679.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArgumentError

__all__ = ["bend", "Bent"]


@dataclass(frozen=True)
class Bent:
    """The result of :func:`bend`.

    Attributes
    ----------
    matrix : ndarray
        The positive definite matrix (the input itself when it already was).
    iterations : int
        Bending iterations done (0 if nothing was needed).
    method : str
        "none" (already positive definite), "weighted", "unweighted" (no weights given), or
        "unweighted-fallback" (the weighted iteration did not reach positive definite in
        ``max_iter`` steps, or held elements made it impossible, so every element moved).
    min_eigenvalue : float
        Smallest eigenvalue of the input.
    """

    matrix: np.ndarray
    iterations: int
    method: str
    min_eigenvalue: float

    @property
    def changed(self) -> bool:
        """Whether bending changed the matrix."""
        return self.method != "none"


def _raised(B: np.ndarray, floor: float) -> np.ndarray:
    w, V = np.linalg.eigh(B)
    out = (V * np.maximum(w, floor)) @ V.T
    return (out + out.T) / 2


def bend(M, weights=None, *, reciprocal: bool = False, floor: float = 1e-4, accept: float | None = None,
         max_iter: int = 10_000) -> Bent:
    """Bend a symmetric matrix to positive definite, changing well-estimated elements least.

    Parameters
    ----------
    M : array_like, shape (t, t)
        Symmetric matrix (a covariance or correlation matrix).
    weights : array_like, shape (t, t), optional
        Non-negative weights of change (large: the element may move more), e.g. the sampling
        variances of the elements; with ``reciprocal=True`` weights of confidence instead
        (e.g. numbers of records), whose reciprocals are used. Zero holds an element. Default
        all 1 (unweighted bending).
    reciprocal : bool
        Use 1 / weights (zero weights stay zero: held).
    floor : float
        Eigenvalues below ``floor`` times the mean absolute diagonal element are raised to it.
    accept : float, optional
        The iteration stops when the smallest eigenvalue reaches ``accept`` times the mean
        absolute diagonal element (default ``floor / 2``: positive definite with a margin;
        ``accept=0`` is the paper's rule, any eigenvalue >= 0).
    max_iter : int
        Iterations of the weighted scheme before falling back to unweighted bending.

    Returns
    -------
    Bent

    Raises
    ------
    ArgumentError
        A matrix that is not square, symmetric and finite; weights of another shape, negative
        or non-finite; floor <= 0 or accept outside [0, floor].
    """
    if not (np.isfinite(floor) and floor > 0):
        raise ArgumentError(f"bend(): floor= takes a number > 0, not {floor!r}", argument="floor")
    if accept is not None and not (np.isfinite(accept) and 0 <= accept <= floor):
        raise ArgumentError(f"bend(): accept= takes a number in [0, floor], not {accept!r}", argument="accept")
    M = np.asarray(M, dtype=float)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ArgumentError(f"bend() takes a square matrix, not shape {M.shape}", argument="M")
    if not np.all(np.isfinite(M)):
        raise ArgumentError("bend() takes a finite matrix; it has NaN or infinite elements", argument="M")
    if not np.allclose(M, M.T, rtol=1e-10, atol=1e-12 * max(np.abs(M).max(initial=0.0), 1.0)):
        raise ArgumentError("bend() takes a symmetric matrix", argument="M")
    M = (M + M.T) / 2
    t = len(M)
    W = np.ones((t, t)) if weights is None else np.asarray(weights, dtype=float)
    if W.shape != (t, t):
        raise ArgumentError(f"bend(): weights have shape {W.shape}, the matrix {M.shape}", argument="weights")
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise ArgumentError("bend(): weights must be finite and >= 0", argument="weights")
    W = (W + W.T) / 2
    if reciprocal:
        W = np.where(W > 0, 1.0 / np.where(W > 0, W, 1.0), 0.0)
    scale = float(np.mean(np.abs(np.diag(M)))) or 1.0
    eps = floor * scale
    stop = (floor / 2 if accept is None else accept) * scale
    ev = np.linalg.eigvalsh(M)
    if t == 0 or ev[0] >= stop:
        return Bent(M, 0, "none", float(ev[0]) if t else np.inf)
    if W.max() > 0:
        W = W / W.max()
        B = M.copy()
        for it in range(1, max_iter + 1):
            B = B - (B - _raised(B, eps)) * W
            B = (B + B.T) / 2
            if np.linalg.eigvalsh(B)[0] >= stop:
                return Bent(B, it, "unweighted" if weights is None else "weighted", float(ev[0]))
    # held elements (or too small weights) leave no positive definite matrix in reach
    return Bent(_raised(M, eps), 1, "unweighted-fallback", float(ev[0]))
