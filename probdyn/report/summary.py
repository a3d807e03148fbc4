"""Convergence diagnostics of a fit, with the problems spelled out in plain English."""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from probdyn.report import _arviz as _az

__all__ = ["Summary", "ebfmi", "elbo_relative_change", "summary"]

_BFMI_MIN = 0.3
_SG_METHODS = ("sgld", "sghmc", "sgnht", "csgld")
# R-hat above this for an SG-MCMC fit: the step size, not only the run length, is suspect
_SG_RHAT = 1.1
_SG_ADVICE = (
    "SG-MCMC chains disagree (R-hat {worst:.3g} > {limit} for {names}): check the step "
    "size. If each chain's trace drifts slowly from its start (ESS tiny), the step is too "
    "small: raise it (about posterior variance / 100 per step for SGLD); if the chains "
    "spread wider than the posterior, jump or show NaN, it is too large: lower it. "
    "Recipe in the docstring of probdyn.fit"
)


@dataclass
class Summary:
    """Diagnostics of one fit (see :func:`summary`).

    Attributes
    ----------
    table : pandas.DataFrame
        ArviZ summary (mean, sd, HDI, MCSE, ``ess_bulk``, ``ess_tail``, ``r_hat``), one
        row per scalar element of each posterior variable.
    method : str or None
        ``idata.attrs["method"]`` when present.
    num_chains, num_draws : int
        Posterior size.
    num_divergences : int or None
        Divergent transitions (None when ``sample_stats`` has no ``diverging``).
    bfmi : np.ndarray or None, shape (num_chains,)
        Energy Bayesian fraction of missing information per chain (None without ``energy``).
    elbo_rel_change : float or None
        For SVI: relative change of the smoothed loss over the last 10% of steps.
    problems : list of str
        Plain-English descriptions of every failed check; empty when all pass.
    notes : list of str
        Checks that could not be run, and why.
    """

    table: pd.DataFrame
    method: str | None = None
    num_chains: int = 0
    num_draws: int = 0
    num_divergences: int | None = None
    bfmi: np.ndarray | None = None
    elbo_rel_change: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.problems

    def to_markdown(self, max_rows: int = 40) -> str:
        """Render as Markdown: a verdict, the problems, the checks and the summary table.

        Parameters
        ----------
        max_rows : int
            At most this many rows of the table are shown (the worst R-hat first).
        """
        lines = [
            f"**Diagnostics** ({self._header()}): "
            + ("all checks passed" if self.ok else f"{len(self.problems)} problem(s)"),
            "",
        ]
        lines += [f"- {p}" for p in self.problems]
        lines += [f"- note: {n}" for n in self.notes]
        if self.problems or self.notes:
            lines.append("")
        if self.num_divergences is not None:
            lines.append(f"- divergent transitions: {self.num_divergences}")
        if self.bfmi is not None:
            lines.append("- E-BFMI per chain: " + ", ".join(f"{b:.2f}" for b in self.bfmi))
        if self.elbo_rel_change is not None:
            lines.append(f"- SVI loss relative change (last 10%): {self.elbo_rel_change:.2%}")
        lines.append("")
        lines.append(_df_to_markdown(self._table_view(max_rows)))
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        out = [
            f"Diagnostics ({self._header()}): "
            + ("all checks passed" if self.ok else f"{len(self.problems)} problem(s)")
        ]
        out += [f"  - {p}" for p in self.problems]
        out += [f"  - note: {n}" for n in self.notes]
        if self.bfmi is not None:
            out.append("  E-BFMI per chain: " + ", ".join(f"{b:.2f}" for b in self.bfmi))
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            out.append(self.table.to_string(max_rows=40))
        return "\n".join(out)

    def _header(self) -> str:
        method = self.method or "unknown method"
        return f"{method}, {self.num_chains} chain(s) x {self.num_draws} draws"

    def _table_view(self, max_rows: int) -> pd.DataFrame:
        tab = self.table
        if len(tab) > max_rows and "r_hat" in tab:
            tab = tab.sort_values("r_hat", ascending=False, na_position="last").head(max_rows)
        return tab.head(max_rows)


def _df_to_markdown(df: pd.DataFrame) -> str:
    """Plain Markdown table without the optional ``tabulate`` dependency."""

    def fmt(v):
        if isinstance(v, float | np.floating):
            return "nan" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    header = "| | " + " | ".join(map(str, df.columns)) + " |"
    sep = "|---|" + "---|" * len(df.columns)
    rows = [
        "| " + str(i) + " | " + " | ".join(fmt(v) for v in r) + " |"
        for i, r in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    return "\n".join([header, sep, *rows])


def ebfmi(energy) -> np.ndarray:
    r"""Energy Bayesian fraction of missing information, per chain.

    .. math::

        \mathrm{E\text{-}BFMI} = \frac{\sum_{n=2}^{N} (E_n - E_{n-1})^2}
                                      {\sum_{n=1}^{N} (E_n - \bar E)^2}

    Values below 0.3 indicate that the momentum resampling explores the energy
    distribution poorly (heavy tails, funnels).

    Parameters
    ----------
    energy : array_like, shape (num_chains, num_draws)
        Hamiltonian energy at every draw.

    Returns
    -------
    np.ndarray, shape (num_chains,)

    References
    ----------
    Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian
    Monte Carlo. arXiv:1604.00695.
    """
    e = np.asarray(energy, dtype=float)
    if e.ndim != 2 or e.shape[1] < 2:
        raise ValueError(f"energy must have shape (num_chains, num_draws>=2); got {e.shape}")
    num = np.sum(np.diff(e, axis=1) ** 2, axis=1)
    den = np.sum((e - e.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return num / den


def elbo_relative_change(loss, tail_fraction: float = 0.1) -> float:
    r"""Relative change of the smoothed SVI loss over the last ``tail_fraction`` of steps.

    The loss is smoothed with a moving average whose window is a fifth of the tail (at
    least one step); the result is

    .. math::

        \frac{|\bar L_{\mathrm{end}} - \bar L_{\mathrm{start}}|}
             {\max(|\bar L_{\mathrm{end}}|, \mathrm{sd}(L_{\mathrm{tail}}), 10^{-12})}

    where :math:`\bar L_{\mathrm{start}}` and :math:`\bar L_{\mathrm{end}}` are the smoothed
    loss at the first and last step of the tail. The standard deviation in the denominator
    keeps a loss that hovers around zero from looking unconverged.

    Parameters
    ----------
    loss : array_like, shape (num_steps,)
        Negative ELBO per step.
    tail_fraction : float
        Fraction of the final steps to inspect.

    Returns
    -------
    float
        NaN if the loss has non-finite values in the tail.
    """
    loss = np.asarray(loss, dtype=float).ravel()
    if loss.size < 2:
        raise ValueError(f"loss must have at least 2 steps; got shape {loss.shape}")
    tail_len = max(2, int(round(tail_fraction * loss.size)))
    tail = loss[-tail_len:]
    if not np.all(np.isfinite(tail)):
        return float("nan")
    window = max(1, tail_len // 5)
    kernel = np.ones(window) / window
    smooth = np.convolve(tail, kernel, mode="valid")
    scale = max(abs(smooth[-1]), float(np.std(tail)), 1e-12)
    return float(abs(smooth[-1] - smooth[0]) / scale)


def _base_name(label: str) -> str:
    return re.sub(r"\[.*\]$", "", str(label))


def _group_problems(values: pd.Series, bad: pd.Series, fmt_one, fmt_many) -> list[str]:
    out = []
    for var, idx in values[bad].groupby(lambda s: _base_name(s)).groups.items():
        vals = values[idx]
        if len(vals) == 1:
            out.append(fmt_one(idx[0], vals.iloc[0]))
        else:
            n_total = sum(_base_name(s) == var for s in values.index)
            out.append(fmt_many(var, len(vals), n_total, vals))
    return out


def _threshold(name: str, value, lower: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a number")
    if not np.isfinite(value) or value < lower:
        raise ValueError(f"{name}={value!r} is not valid; expected a finite number >= {lower:g}")
    return float(value)


def _names(mask: pd.Series) -> str:
    names = [str(i) for i in mask.index[mask]]
    return ", ".join(f"'{n}'" for n in names[:5]) + (
        f" and {len(names) - 5} more" if len(names) > 5 else ""
    )


def _constant_rows(post, table: pd.DataFrame, var_names) -> pd.Series:
    """Rows of ``table`` whose draws are one finite value (R-hat/ESS undefined, no problem)."""
    out = pd.Series(False, index=table.index)
    for var in var_names or list(post.data_vars):
        vals = np.asarray(post[var].values)
        flat = vals.reshape(vals.shape[0] * vals.shape[1], -1)
        if flat.shape[0] == 0 or vals.dtype.kind not in "biufc":
            continue
        same = np.all(flat == flat[:1], axis=0) & np.all(np.isfinite(flat), axis=0)
        labels = [var] if flat.shape[1] == 1 and var in table.index else None
        if labels is None:
            labels = [i for i in table.index if _base_name(i) == var]
        if len(labels) == flat.shape[1]:
            out[labels] = same
    return out


def _max_depth(given: int | None, idata) -> int:
    if given is not None:
        return int(given)
    raw = getattr(idata, "attrs", {}).get("options")
    try:
        value = json.loads(raw).get("max_tree_depth") if isinstance(raw, str) else None
        parsed = ast.literal_eval(value) if isinstance(value, str) else value
    except (ValueError, SyntaxError, AttributeError):
        parsed = None
    if isinstance(parsed, tuple) and len(parsed) == 2:
        parsed = parsed[1]  # (warmup depth, sampling depth)
    return int(parsed) if isinstance(parsed, int) and parsed >= 1 else 10


def _is_auxiliary(da) -> bool:
    return da.attrs.get("probdyn_role") == "auxiliary"


def summary(
    idata,
    *,
    var_names: list[str] | None = None,
    rhat_max: float = 1.01,
    ess_min_per_chain: float = 100,
    bfmi_min: float = _BFMI_MIN,
    elbo_rtol: float = 0.01,
    max_tree_depth: int | None = None,
) -> Summary:
    """Diagnose a fit: R-hat, ESS, divergences, E-BFMI and, for SVI, loss convergence.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        Output of :func:`probdyn.infer.fit` (or ``arviz.from_numpyro``) with a
        ``posterior`` group of dims ``("chain", "draw", ...)`` and optionally
        ``sample_stats`` (``diverging``, ``energy`` for NUTS/HMC; ``loss`` with dim
        ``("svi_step",)`` for SVI).
    var_names : list of str, optional
        Posterior variables to summarise; default all but auxiliary ones (sites marked
        ``infer={"auxiliary": True}``, e.g. the noise increments of
        :func:`probdyn.sde_path`), which an explicit ``var_names`` still shows.
    rhat_max : float
        Largest acceptable rank-normalised split R-hat (Vehtari et al. 2021).
    ess_min_per_chain : float
        Smallest acceptable bulk and tail effective sample size divided by the number
        of chains.
    bfmi_min : float
        Smallest acceptable E-BFMI per chain.
    elbo_rtol : float
        Largest acceptable relative change of the smoothed SVI loss over the last 10% of
        steps (see :func:`elbo_relative_change`).
    max_tree_depth : int, optional
        NUTS maximum tree depth, for the saturation check on ``sample_stats.tree_depth``;
        default the ``max_tree_depth`` recorded in ``idata.attrs["options"]`` by
        :func:`probdyn.fit`, else NumPyro's default 10.

    Returns
    -------
    Summary
        ``str(result)`` or ``result.to_markdown()`` for display; ``result.problems`` lists
        every failed check in plain English.

    Notes
    -----
    For SVI (``loss`` in ``sample_stats``) the posterior draws are independent draws from
    the guide, so R-hat and ESS say nothing about convergence and are not checked; the
    loss trace is checked instead. R-hat needs at least two chains.

    Non-finite values are problems, never passes: NaN/inf posterior draws, an R-hat or
    ESS that cannot be computed (e.g. one draw per chain) for a variable that is not
    constant, non-finite ``energy``/``lp`` (a non-finite log-density, reported apart from
    divergences), non-finite entries of ``diverging``, an E-BFMI that is NaN. NUTS trees
    that reach ``max_tree_depth`` are reported too (an efficiency problem: the sampler's
    trajectories were cut short). A non-finite ``log_likelihood`` at posterior draws is
    reported per observed site.

    For SG-MCMC fits (``attrs["method"]`` "sgld", "sghmc", "sgnht", "csgld"), an R-hat
    above 1.1 adds a step-size diagnosis (too small: chains have not left their starts;
    too large: chains spread or blow up), since without a Metropolis correction the step
    size sets both mixing and bias.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    """
    rhat_max = _threshold("rhat_max", rhat_max, 1.0)
    ess_min_per_chain = _threshold("ess_min_per_chain", ess_min_per_chain, 0.0)
    bfmi_min = _threshold("bfmi_min", bfmi_min, 0.0)
    elbo_rtol = _threshold("elbo_rtol", elbo_rtol, 0.0)
    if max_tree_depth is not None and (
        isinstance(max_tree_depth, bool)
        or not isinstance(max_tree_depth, int | np.integer)
        or max_tree_depth < 1
    ):
        raise ValueError(f"max_tree_depth={max_tree_depth!r} is not valid; expected an int >= 1")
    if not _az.has_group(idata, "posterior"):
        raise ValueError(
            "idata must be an ArviZ result (InferenceData or DataTree) with a posterior "
            f"group; got {type(idata).__name__}"
        )
    post = _az.get_group(idata, "posterior")
    if var_names is not None:
        missing = [v for v in var_names if v not in post.data_vars]
        if missing:
            raise ValueError(
                f"var_names must name posterior variables {list(post.data_vars)}; "
                f"got unknown {missing}"
            )
    else:
        # auxiliary sites (e.g. sde_path noise increments) only when asked for by name
        var_names = [v for v in post.data_vars if not _is_auxiliary(post[v])] or None
    num_chains, num_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    stats = _az.get_group(idata, "sample_stats") if _az.has_group(idata, "sample_stats") else None
    method = idata.attrs.get("method")
    if method is None and post.attrs.get("method"):
        method = post.attrs.get("method")
    is_svi = (stats is not None and "loss" in stats) or str(method).lower().startswith("svi")

    problems: list[str] = []
    notes: list[str] = []
    check_mcmc = not is_svi
    is_sg = str(method).lower() in _SG_METHODS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on 1 chain or constant values
        table = _az.summary_table(idata, var_names, kind="all" if check_mcmc else "stats")

    constant = _constant_rows(post, table, var_names)
    if check_mcmc and num_chains < 2:
        notes.append("only 1 chain: R-hat cannot detect chains that disagree; run 2 or more")
    if check_mcmc and num_chains >= 2 and "r_hat" in table:
        rhat = table["r_hat"].astype(float)
        undefined = rhat.isna() & ~constant
        if undefined.any():
            problems.append(
                f"R-hat could not be computed (NaN) for {_names(undefined)}: too few draws "
                f"({num_draws} per chain) or non-finite draws; run longer"
            )
        problems += _group_problems(
            rhat,
            rhat > rhat_max,
            lambda n, v: (
                f"R-hat of '{n}' is {v:.3g} (> {rhat_max}): chains disagree; "
                "run longer or reparameterise"
            ),
            lambda var, k, n, v: (
                f"R-hat of '{var}' exceeds {rhat_max} in {k} of {n} "
                f"elements (worst '{v.idxmax()}' = {v.max():.3g}): chains disagree; "
                "run longer or reparameterise"
            ),
        )
        sg_bad = rhat > _SG_RHAT
        if is_sg and sg_bad.any():
            problems.append(
                _SG_ADVICE.format(worst=rhat[sg_bad].max(), limit=_SG_RHAT, names=_names(sg_bad))
            )
    if check_mcmc and "ess_bulk" in table:
        ess = table[["ess_bulk", "ess_tail"]].astype(float).min(axis=1) / num_chains
        undefined = table[["ess_bulk", "ess_tail"]].astype(float).isna().any(axis=1) & ~constant
        if undefined.any():
            problems.append(
                f"ESS could not be computed (NaN) for {_names(undefined)}: too few draws "
                f"({num_draws} per chain) or non-finite draws; run longer"
            )
        problems += _group_problems(
            ess,
            ess < ess_min_per_chain,
            lambda n, v: (
                f"ESS of '{n}' is {v:.0f} per chain (< {ess_min_per_chain:g}): "
                "draws are strongly autocorrelated; run longer"
            ),
            lambda var, k, n, v: (
                f"ESS of '{var}' is below {ess_min_per_chain:g} per chain "
                f"in {k} of {n} elements (worst '{v.idxmin()}' = {v.min():.0f}); run longer"
            ),
        )
    for var in var_names or list(post.data_vars):
        vals = np.asarray(post[var].values)
        if vals.dtype.kind in "fc":
            bad = int(np.sum(~np.isfinite(vals)))
            if bad:
                problems.append(
                    f"non-finite posterior draws of '{var}': {bad} of {vals.size} values are "
                    "NaN or inf; the sampler or model broke down numerically"
                )

    ll_group = getattr(idata, "log_likelihood", None) if hasattr(idata, "log_likelihood") else None
    if ll_group is not None:
        for site in ll_group.data_vars:
            vals = np.asarray(ll_group[site].values, dtype=float)
            bad = ~np.isfinite(vals)
            if bad.any():
                draws = int(np.sum(bad.reshape(bad.shape[0], bad.shape[1], -1).any(-1)))
                problems.append(
                    f"non-finite log-likelihood of site '{site}' at {draws} of "
                    f"{bad.shape[0] * bad.shape[1]} posterior draws ({int(bad.sum())} of "
                    f"{bad.size} values NaN or inf): the model's log-density at that site "
                    "breaks down where the posterior goes (e.g. a truncated series such as "
                    "too few num_terms, or observations outside the support)"
                )

    num_div = None
    bfmi = None
    elbo_change = None
    if stats is not None:
        if "lp" in stats or "energy" in stats:
            name = "lp" if "lp" in stats else "energy"
            vals = np.asarray(stats[name], dtype=float)
            bad = int(np.sum(~np.isfinite(vals)))
            if bad:
                problems.append(
                    f"non-finite log-density: sample_stats '{name}' is NaN or inf at {bad} of "
                    f"{vals.size} draws (distinct from divergences): the model's log-density "
                    "overflows or leaves its support where the sampler went"
                )
        if "diverging" in stats:
            div = np.asarray(stats["diverging"])
            if div.dtype.kind in "fc" and not np.all(np.isfinite(div)):
                problems.append(
                    f"sample_stats 'diverging' has {int(np.sum(~np.isfinite(div)))} non-finite "
                    "entries (expected True/False): the statistics are corrupt"
                )
                div = np.where(np.isfinite(div), div, 0)
            num_div = int(np.sum(div != 0))
            if num_div:
                frac = num_div / max(1, num_chains * num_draws)
                problems.append(
                    f"{num_div} divergent transition{'s' if num_div > 1 else ''} "
                    f"({frac:.1%} of draws): the sampler misses part of the posterior; "
                    "raise target_accept_prob or reparameterise (NumPyro also counts a "
                    "proposal with a NaN log-density as divergent: if the model can return "
                    "NaN, check its sites with probdyn.infer.nonfinite_sites)"
                )
        if "energy" in stats:
            energy = np.asarray(stats["energy"], dtype=float).reshape(num_chains, -1)
            if energy.shape[1] >= 2:
                with np.errstate(all="ignore"):
                    bfmi = ebfmi(energy)
                for c, b in enumerate(bfmi):
                    if not np.isfinite(b):
                        problems.append(
                            f"E-BFMI of chain {c} cannot be computed ({b}): its energy is "
                            "non-finite or constant"
                        )
                    elif b < bfmi_min:
                        problems.append(
                            f"E-BFMI of chain {c} is {b:.2f} (< {bfmi_min}): momentum "
                            "resampling explores the energy poorly; reparameterise"
                        )
        if "tree_depth" in stats:
            depth = _max_depth(max_tree_depth, idata)
            hit = int(np.sum(np.asarray(stats["tree_depth"]) >= depth))
            if hit:
                frac = hit / max(1, np.asarray(stats["tree_depth"]).size)
                problems.append(
                    f"{hit} NUTS transition{'s' if hit > 1 else ''} ({frac:.1%}) reached the "
                    f"maximum tree depth {depth}: trajectories were cut short (inefficient "
                    "exploration); raise max_tree_depth or reparameterise"
                )
        if "loss" in stats:
            loss = np.asarray(stats["loss"], dtype=float).ravel()
            if not np.all(np.isfinite(loss)):
                problems.append("SVI loss has non-finite values: lower the learning rate")
            if loss.size >= 2:
                elbo_change = elbo_relative_change(loss)
                if np.isfinite(elbo_change) and elbo_change > elbo_rtol:
                    problems.append(
                        f"SVI loss still changing: the smoothed negative ELBO moved by "
                        f"{elbo_change:.1%} over the last 10% of steps (> {elbo_rtol:.0%}); "
                        "run more steps or lower the learning rate"
                    )
    return Summary(
        table=table,
        method=None if method is None else str(method),
        num_chains=num_chains,
        num_draws=num_draws,
        num_divergences=num_div,
        bfmi=bfmi,
        elbo_rel_change=elbo_change,
        problems=problems,
        notes=notes,
    )
