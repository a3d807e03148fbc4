"""Convergence diagnostics of a fit, with the problems spelled out in plain English."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd

__all__ = ["Summary", "ebfmi", "elbo_relative_change", "summary"]

_BFMI_MIN = 0.3


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


def summary(
    idata,
    *,
    var_names: list[str] | None = None,
    rhat_max: float = 1.01,
    ess_min_per_chain: float = 100,
    bfmi_min: float = _BFMI_MIN,
    elbo_rtol: float = 0.01,
) -> Summary:
    """Diagnose a fit: R-hat, ESS, divergences, E-BFMI and, for SVI, loss convergence.

    Parameters
    ----------
    idata : arviz.InferenceData
        Output of :func:`probdyn.infer.fit` (or ``arviz.from_numpyro``) with a
        ``posterior`` group of dims ``("chain", "draw", ...)`` and optionally
        ``sample_stats`` (``diverging``, ``energy`` for NUTS/HMC; ``loss`` with dim
        ``("svi_step",)`` for SVI).
    var_names : list of str, optional
        Posterior variables to summarise; default all.
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

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    """
    if not hasattr(idata, "posterior"):
        raise ValueError(
            "idata must be an arviz.InferenceData with a posterior group; "
            f"got {type(idata).__name__}"
        )
    post = idata.posterior
    if var_names is not None:
        missing = [v for v in var_names if v not in post.data_vars]
        if missing:
            raise ValueError(
                f"var_names must name posterior variables {list(post.data_vars)}; "
                f"got unknown {missing}"
            )
    num_chains, num_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    stats = idata.sample_stats if hasattr(idata, "sample_stats") else None
    method = idata.attrs.get("method") if hasattr(idata, "attrs") else None
    if method is None and post.attrs.get("method"):
        method = post.attrs.get("method")
    is_svi = (stats is not None and "loss" in stats) or str(method).lower().startswith("svi")

    problems: list[str] = []
    notes: list[str] = []
    check_mcmc = not is_svi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on 1 chain or constant values
        table = az.summary(idata, var_names=var_names, kind="all" if check_mcmc else "stats")

    if check_mcmc and num_chains < 2:
        notes.append("only 1 chain: R-hat cannot detect chains that disagree; run 2 or more")
    if check_mcmc and num_chains >= 2 and "r_hat" in table:
        rhat = table["r_hat"].astype(float)
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
    if check_mcmc and "ess_bulk" in table:
        ess = table[["ess_bulk", "ess_tail"]].astype(float).min(axis=1) / num_chains
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
    nan_rows = table.index[table["mean"].isna()] if "mean" in table else []
    if len(nan_rows):
        problems.append(f"non-finite posterior draws in {list(nan_rows)[:5]}")

    num_div = None
    bfmi = None
    elbo_change = None
    if stats is not None:
        if "diverging" in stats:
            num_div = int(np.asarray(stats["diverging"]).sum())
            if num_div:
                frac = num_div / max(1, num_chains * num_draws)
                problems.append(
                    f"{num_div} divergent transition{'s' if num_div > 1 else ''} "
                    f"({frac:.1%} of draws): the sampler misses part of the posterior; "
                    "raise target_accept_prob or reparameterise"
                )
        if "energy" in stats:
            energy = np.asarray(stats["energy"]).reshape(num_chains, -1)
            if energy.shape[1] >= 2:
                bfmi = ebfmi(energy)
                for c, b in enumerate(bfmi):
                    if b < bfmi_min:
                        problems.append(
                            f"E-BFMI of chain {c} is {b:.2f} (< {bfmi_min}): momentum "
                            "resampling explores the energy poorly; reparameterise"
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
