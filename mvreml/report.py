"""Fitted model -> the tables of a :class:`mvreml.Result` (varcomp, components, fixef, BLUPs).

Standard errors of parameters come from the inverse AI matrix; those of covariance
elements (for vpredict) through each structure's Jacobian d vech(G) / d theta.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .likelihood import REMLModel
from .reml import FitState
from .structures import jacobian_elements, vech_pairs


def _bound_code(kind: str, fixed: bool, bound: bool, constrained: bool = False) -> str:
    """asreml's codes: F fixed, B at a boundary, C set from another parameter by constraints=,
    else P / U."""
    if fixed:
        return "F"
    if bound:
        return "B"
    if constrained:
        return "C"
    return "P" if kind == "variance" else "U"


def _expand(reduced, model) -> list:
    """Per varcomp row (parameter order): is it part of a matrix held at reduced rank?"""
    return [bool(reduced[i]) for b in model.blocks for i in range(b.start, b.stop)]


def build_result(model: REMLModel, state: FitState, fixed: str, random, residual, timer=None,
                 seconds: float = 0.0, fixef_vcov: bool = True):
    """Assemble the Result of a finished iteration. Its ``fixef_vcov`` (p solves with the factor,
    or a read of the selected inverse) is computed when first asked for; ``fixef_vcov=False``:
    none (Result.fixef_vcov None)."""
    from .results import Result

    d = model.design
    ev = state.evaluation
    theta = state.theta
    if not np.array_equal(ev.theta, theta):
        # never report one point's effects with another's parameters
        ev = model.evaluate(theta)
    multivariate = d.t > 1 or len(d.traits) > 1
    ai_inv = state.ai_inverse
    se_theta = np.sqrt(np.clip(np.diag(ai_inv), 0, None))
    reduced = state.reduced if state.reduced is not None else np.zeros(len(theta), bool)
    # a matrix held at reduced rank keeps standard errors (it moves on its factor); a variance
    # held at zero or a user-fixed parameter has none
    held = state.fixed | (state.bound & ~reduced)
    se_theta[held] = np.nan
    con = getattr(state, "constraints", None)
    # asreml's "C": a parameter set by a constraint from another (the group's first keeps its
    # own code), so that params - F - C is the number estimated
    constrained = con.dependent if con is not None else np.zeros(len(theta), bool)

    rows, index = [], []
    comp_rows, jac_blocks = [], []
    structures, term_traits = {}, {}
    for b in model.blocks:
        st = b.structure
        traits = list(st.traits)
        structures[b.name] = st.name
        term_traits[b.name] = traits
        labels = st.labels(b.label_name, multivariate)
        for j, (lab, kind) in enumerate(zip(labels, st.kinds())):
            i = b.start + j
            est = float(theta[i])
            se = float(se_theta[i])
            rows.append(dict(term=b.name, estimate=est, std_error=se,
                             z_ratio=est / se if np.isfinite(se) and se > 0 else np.nan,
                             bound=_bound_code(kind, bool(state.fixed[i]), bool(state.bound[i]),
                                               bool(constrained[i])), kind=kind))
            index.append(lab)
        G = st.matrix(theta[b.slice])
        for (i, j) in vech_pairs(len(traits)):
            comp_rows.append(dict(term=b.name, trait_1=traits[i], trait_2=traits[j], estimate=float(G[i, j])))
        J = np.asarray(jacobian_elements(st, theta[b.slice]), float).reshape(len(vech_pairs(len(traits))),
                                                                            b.stop - b.start)
        jac_blocks.append((b, J))
        if st.name in ("corv", "corh", "fa") and len(traits) > 1:
            # us / corgh held singular are marked by the engine; these structures are checked here,
            # in correlation form so that traits on different scales weigh alike
            sd = np.sqrt(np.clip(np.diag(G), 1e-300, None))
            ev_min = np.linalg.eigvalsh(G / np.outer(sd, sd)).min()
            if ev_min <= 1e-6:
                for r in rows[-(b.stop - b.start):]:
                    if r["kind"] == "variance" and r["bound"] != "F":
                        r["bound"] = "B"
    varcomp = pd.DataFrame(rows, index=pd.Index(index, name="component"))
    components = pd.DataFrame(comp_rows)
    n_el = len(components)
    J = np.zeros((n_el, len(theta)))
    r0 = 0
    for b, Jb in jac_blocks:
        J[r0:r0 + Jb.shape[0], b.slice] = Jb
        r0 += Jb.shape[0]
    comp_vcov = J @ ai_inv @ J.T

    # fixed effects and BLUPs with PEV from the selected inverse
    # the last evaluation holds C^-1 on the pattern of C, whose columns start with their diagonal
    diag = (model.pattern.diagonal(ev.cinv) if ev.cinv is not None else model.pev_diagonal(theta))
    p = d.p
    sol = ev.solution
    fixef = pd.DataFrame({"estimate": sol[:p], "std_error": np.sqrt(np.clip(diag[:p], 0, None))},
                         index=pd.Index(d.fixef_names, name="effect"))
    # computed on first access (Result.fixef_vcov), at theta: the factor held may by then be
    # another point's (a rejected candidate, a later evaluation), fixed_vcov refactorizes
    theta_hat = np.array(theta, dtype=float, copy=True)
    pending = (lambda: model.fixed_vcov(theta=theta_hat)) if fixef_vcov else None
    blups = {}
    for rd, off, block in zip(d.random, model.pattern.offsets, model.blocks[:model.n_random]):
        n = rd.q * rd.t
        U = sol[off:off + n].reshape(rd.q, rd.t)
        pev = diag[off:off + n].reshape(rd.q, rd.t)
        tr = rd.comp_labels      # trait names, or the levels of the term's compound dimension
        df = pd.DataFrame(U, index=pd.Index(rd.levels, name=rd.name), columns=tr)
        for j, name in enumerate(tr):
            df[f"pev_{name}"] = pev[:, j]
        if rd.bases and ev.cinv is not None:
            # random regressions: the PEV covariances of a level's coefficients, for the SEs of
            # its curve (the level's c x c block of C^-1 is dense in the pattern, right below
            # each diagonal entry)
            ptr = model.pattern.indptr
            for j in range(rd.t):
                cols = off + np.arange(rd.q) * rd.t + j
                for i in range(j + 1, rd.t):
                    df[f"pev_{tr[i]}:{tr[j]}"] = ev.cinv[ptr[cols] + (i - j)]
        if rd.kdiag is not None:
            # reliability 1 - PEV / (K_ii sigma^2): K_ii = 1 + F for a pedigree
            Gm = block.structure.matrix(theta[block.slice])
            for j, name in enumerate(tr):
                with np.errstate(divide="ignore", invalid="ignore"):
                    df[f"reliability_{name}"] = 1.0 - pev[:, j] / (rd.kdiag * Gm[j, j])
        blups[rd.name] = df

    diagnostics = list(d.messages) + list(state.messages)
    at_bound = [lab for lab, b, r in zip(varcomp.index, varcomp["bound"], _expand(reduced, model))
                if b == "B" and not r]
    if at_bound:
        diagnostics.append("at the boundary (held there, reported with bound 'B'): " + ", ".join(at_bound))
    if con is not None:
        names = list(varcomp.index)
        diagnostics.append("constrained (bound 'C'): " + "; ".join(
            " = ".join(names[i] if con.ratio[i] == 1.0 else f"{con.ratio[i]:.6g} x {names[g[0]]}"
                       if i != g[0] else names[i] for i in g) for g in con.groups))
    if not state.converged:
        diagnostics.append(state.reason)
    hist = pd.DataFrame(state.history)
    # parameters estimated: a constraint group counts once (the df of a likelihood-ratio test)
    n_free = int((~state.fixed).sum()) - (int((con.dependent & ~state.fixed).sum()) if con is not None else 0)
    bases = {rd.name: {name: params for name, params in rd.bases.items()} for rd in d.random if rd.bases}
    model_info = dict(fixed=fixed, random=random, residual=residual, n_varparams=n_free, bases=bases,
                      n_fixed_params=int(p), data_signature=d.signature(),
                      timings=dict(timer.seconds) if timer is not None else {}, seconds=float(seconds))
    residual_table = _residual_table(d, ev)
    # the pseudo-records of missing plots (spatial residuals) and their mv effects are no data
    m = d.n_missing_plots
    result = Result(traits=list(d.traits), loglik=float(ev.loglik), n_obs=int(d.n_obs - m), rank_x=int(p - m),
                  n_units=int(d.n_units), n_dropped=int(d.n_dropped), converged=bool(state.converged),
                  reason=state.reason, iterations=int(state.iterations), history=hist, varcomp=varcomp,
                  components=components, components_vcov=comp_vcov, structures=structures,
                  term_traits=term_traits, fixef=fixef, fixef_vcov=None,
                  fixed_terms={k: list(map(int, v)) for k, v in d.fixed_terms.items()}, blups=blups,
                  diagnostics=diagnostics, model=model_info, residual_table=residual_table)
    # predictions by classify need the fitted model itself (design, factor): kept on the
    # Result, not serialized (a Result read from JSON has none)
    result._fitted = (model, theta_hat)
    result._fixef_vcov_pending = pending
    return result


def _residual_table(d, ev) -> pd.DataFrame:
    """One row per record: its data row (position in the data given to fit), trait, y, fitted
    value (X b + Z u) and residual; for a spatial residual also the section and the lattice
    positions (0-based, per dimension), which the variogram needs."""
    n = d.n_obs - d.n_missing_plots
    unit = d.obs_unit[:n]
    rows = d.unit_rows[unit] if d.unit_rows is not None else unit
    out = {"row": np.asarray(rows, dtype=np.int64), "trait": [d.traits[j] for j in d.obs_trait[:n]],
           "y": d.y[:n], "fitted": d.y[:n] - ev.residuals[:n], "residual": ev.residuals[:n]}
    if d.lattice is not None:
        if d.sections is not None:
            out["section"] = [str(d.sections[s]) for s in d.unit_section[unit]]
        for k, (name, _, _) in enumerate(d.lattice[0]["dims"]):
            out[f"pos_{name}"] = d.plot_positions[unit, k]
    return pd.DataFrame(out)
