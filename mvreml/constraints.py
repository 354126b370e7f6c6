"""Equality and fixed-ratio constraints between variance parameters (asreml's vcc / vcm).

``constraints=`` of :func:`mvreml.fit` and :meth:`mvreml.Model.fit` ties parameters together:
theta = M phi, each row of M with one positive entry. Members of a group keep fixed ratios
to the group's first member (ratio 1: equal); phi holds one value per group and one per
unconstrained parameter. The AI-REML iteration steps on phi (the working parameter of a
group has the column M[:, g] in d theta / d w, so its score is M' score and its information
M' AI M), and the reported standard errors come from that reduced AI matrix: the members of
a group share theirs (times their ratio). In ``Result.varcomp`` the members set from the
group's first have bound "C" (asreml's code for a constrained parameter; the first keeps P
or U), so that parameters minus F minus C are those estimated (``model["n_varparams"]``).

Accepted forms:

* a list of groups, each a list of component labels (``["site_S1!R", "site_S2!R"]``: equal)
  or a mapping {label: ratio} (theta_label / ratio equal across the group: ``{"a": 1, "b":
  0.1}`` says b is a tenth of a, asreml's ``5 7 * .1``); a term name in a group stands for
  all of that term's parameters, matched position by position with the other terms of the
  group (``["at(loc, A):rowf", "at(loc, B):rowf"]``; terms of one structure);
* a constraint matrix M (n_params x n_free), asreml's vcm: row i has one positive entry,
  in the column of the value parameter i is a multiple of.

Only parameters that are their own working parameter can be tied: variances of idv / diag
terms (and residuals), the correlation and variances of corv / corh, ar1, fa loadings and
specific variances. The elements of a us / corgh matrix on two traits or more move as one
matrix (kept positive semidefinite as a whole) and cannot be tied one by one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .boundary import is_psd_block
from .errors import ArgumentError

__all__ = ["Constraints", "parse_constraints"]


@dataclass(frozen=True)
class Constraints:
    """Groups of parameters tied by fixed ratios: theta_i = ratio_i * theta_leader(i).

    Attributes
    ----------
    leader : ndarray of int (n,)
        The group's first member for every parameter (itself when it is not constrained).
    ratio : ndarray (n,)
        theta_i / theta_leader(i) (1 for leaders and unconstrained parameters).
    groups : tuple of tuple of int
        The groups (two parameters or more each), leader first.
    """

    leader: np.ndarray
    ratio: np.ndarray
    groups: tuple

    @property
    def n(self) -> int:
        return len(self.leader)

    @property
    def constrained(self) -> np.ndarray:
        """Parameters that are members of a group (leaders included)."""
        out = np.zeros(self.n, bool)
        for g in self.groups:
            out[list(g)] = True
        return out

    @property
    def dependent(self) -> np.ndarray:
        """Parameters determined by another (members other than the leader)."""
        return self.leader != np.arange(self.n)

    def matrix(self) -> np.ndarray:
        """M (n x n_free): theta = M phi, phi the leaders and the unconstrained parameters."""
        free = np.flatnonzero(~self.dependent)
        col = {int(i): k for k, i in enumerate(free)}
        M = np.zeros((self.n, len(free)))
        for i in range(self.n):
            M[i, col[int(self.leader[i])]] = self.ratio[i]
        return M

    def column(self, i: int) -> np.ndarray:
        """d theta / d theta_leader for leader i (its column of M)."""
        c = np.zeros(self.n)
        members = self.leader == i
        c[members] = self.ratio[members]
        return c

    def project(self, theta: np.ndarray) -> np.ndarray:
        """theta with every dependent parameter set from its leader."""
        theta = np.array(theta, dtype=float, copy=True)
        dep = self.dependent
        theta[dep] = self.ratio[dep] * theta[self.leader[dep]]
        return theta

    def pool(self, theta: np.ndarray) -> np.ndarray:
        """theta on the constraints: each group at the mean of its members' theta_i / ratio_i
        (starting values, EM updates), then projected."""
        theta = np.array(theta, dtype=float, copy=True)
        for g in self.groups:
            g = list(g)
            theta[g[0]] = float(np.mean(theta[g] / self.ratio[g]))
        return self.project(theta)

    def satisfied(self, theta: np.ndarray, rtol: float = 1e-12) -> bool:
        return bool(np.allclose(theta, self.project(theta), rtol=rtol, atol=0.0))


def _expand(item, blocks, names) -> list[int]:
    """Parameter positions named by one group entry: a component label or a term name."""
    if item in names:
        return [names.index(item)]
    for b in blocks:
        if item == b.name or item == b.label_name:
            return list(range(b.start, b.stop))
    raise ArgumentError(f"constraints= names {item!r}, neither a variance parameter ({names}) nor a term "
                        f"({[b.name for b in blocks]})", argument="constraints")


def _groups_from_matrix(M, n: int, names) -> list[dict]:
    try:
        M = np.asarray(M, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentError("constraints= as a matrix must be numbers (n_params x n_free)",
                            argument="constraints") from None
    if M.ndim != 2 or M.shape[0] != n:
        raise ArgumentError(f"the constraint matrix has shape {M.shape} but the model has {n} variance "
                            f"parameters ({names}): give one row per parameter", argument="constraints")
    groups = []
    for c in range(M.shape[1]):
        rows = np.flatnonzero(M[:, c])
        if len(rows) > 1:
            groups.append({names[i]: float(M[i, c]) for i in rows})
    nz = (M != 0).sum(axis=1)
    if np.any(nz != 1):
        i = int(np.flatnonzero(nz != 1)[0])
        raise ArgumentError(f"row {i} ({names[i]!r}) of the constraint matrix has {int(nz[i])} nonzero entries: "
                            "each parameter is a multiple of exactly one free value (hold a parameter with fix=)",
                            argument="constraints")
    return groups


def parse_constraints(spec, blocks, names: Sequence[str], fixed: np.ndarray | None = None) -> Constraints | None:
    """``constraints=`` of a fit -> :class:`Constraints` (None when there are none).

    Parameters
    ----------
    spec : list of groups or 2-D array, or None
        As described in the module docstring.
    blocks : list of ParamBlock
    names : sequence of str
        The component labels of theta (``Result.varcomp.index``).
    fixed : ndarray of bool, optional
        Parameters held by ``fix=``: a group is held as a whole or not at all.

    Raises
    ------
    ArgumentError
        Unknown labels, a parameter in two groups, a non-positive ratio, terms of different
        sizes in one group, a parameter of a us / corgh matrix, a group fixed in part.
    """
    if spec is None:
        return None
    names = list(names)
    n = len(names)
    if isinstance(spec, np.ndarray) or (hasattr(spec, "shape") and len(getattr(spec, "shape", ())) == 2):
        raw = _groups_from_matrix(spec, n, names)
    elif isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
        raise ArgumentError("constraints= takes a list of groups (each a list of component labels or a "
                            "{label: ratio} mapping) or a constraint matrix", argument="constraints")
    else:
        raw = list(spec)
    leader = np.arange(n)
    ratio = np.ones(n)
    groups, owner = [], {}
    for gi, group in enumerate(raw):
        if isinstance(group, str) or not isinstance(group, (Sequence, Mapping)):
            raise ArgumentError(f"constraints= group {gi} must be a list of labels or a {{label: ratio}} "
                                f"mapping, got {group!r}", argument="constraints")
        items = list(group.items()) if isinstance(group, Mapping) else [(g, 1.0) for g in group]
        cols = []
        for item, r in items:
            if not isinstance(item, str):
                raise ArgumentError(f"constraints= group {gi}: {item!r} is not a component label",
                                    argument="constraints")
            given = r
            try:
                r = float(r)
            except (TypeError, ValueError):
                r = np.nan
            if not (np.isfinite(r) and r > 0):
                raise ArgumentError(f"constraints= group {gi}: the ratio of {item!r} must be a positive number, "
                                    f"got {given!r}", argument="constraints")
            cols.append((item, _expand(item, blocks, names), r))
        sizes = {len(c) for _, c, _ in cols}
        if len(sizes) > 1:
            raise ArgumentError(f"constraints= group {gi} ties terms with different numbers of parameters: "
                                + ", ".join(f"{it} ({len(c)})" for it, c, _ in cols), argument="constraints")
        for pos in range(sizes.pop() if sizes else 0):
            members = [(c[pos], r) for _, c, r in cols]
            idx = [m for m, _ in members]
            if len(set(idx)) < len(idx):
                raise ArgumentError(f"constraints= group {gi} names {names[idx[0]]!r} twice", argument="constraints")
            if len(idx) < 2:
                continue
            for i in idx:
                if i in owner:
                    raise ArgumentError(f"{names[i]!r} is in two constraint groups ({owner[i]} and {gi}): merge "
                                        "them into one", argument="constraints")
                owner[i] = gi
                b = next(b for b in blocks if b.start <= i < b.stop)
                if is_psd_block(b):
                    raise ArgumentError(f"constraints= ties {names[i]!r}, an element of the {b.structure} matrix of "
                                        f"{b.name!r}: a us / corgh matrix moves as a whole and its elements cannot "
                                        "be tied one by one (use diag / corv / corh / fa, or fix=)",
                                        argument="constraints")
            r0 = members[0][1]
            for i, r in members:
                leader[i] = idx[0]
                ratio[i] = r / r0
            groups.append(tuple(idx))
            if fixed is not None and 0 < fixed[idx].sum() < len(idx):
                raise ArgumentError(f"fix= holds part of the constraint group {[names[i] for i in idx]}: fix all "
                                    "of it or none", argument="constraints")
    if not groups:
        return None
    kinds = [k for b in blocks for k in b.structure.kinds()]
    for g in groups:
        ks = {kinds[i] for i in g}
        if "correlation" in ks and (len(ks) > 1 or np.any(ratio[list(g)] != 1.0)):
            raise ArgumentError(f"constraints= group {[names[i] for i in g]}: correlations can only be set equal "
                                "to other correlations (ratio 1)", argument="constraints")
    return Constraints(leader=leader, ratio=ratio, groups=tuple(groups))
