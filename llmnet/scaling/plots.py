"""Figures for scaling reports (matplotlib, Agg backend; plotting only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from llmnet.scaling.report import ScalingReport  # noqa: E402

_STYLE = {"bilevel": ("tab:blue", "bi-level (Chen et al.)"),
          "per_query_law": ("tab:green", "per-query law (authors' code)"),
          "mixture": ("tab:red", "multi-level mixture (ours)"),
          "answer_dist": ("tab:purple", "answer-distribution law (ours)")}


def plot_scaling(report: ScalingReport, path) -> Path:
    """Accuracy against K on a log axis: one panel per group (overall first), exact
    accuracies with ``level`` error bars, every fitted curve with its band (omitted where it
    cannot be estimated), the recommended fit drawn thicker, and K* (dotted, black). Writes ``path`` (PNG/PDF/SVG
    by suffix) and returns it."""
    path = Path(path)
    groups = list(report.groups.values())
    ncols = min(len(groups), 3)
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
    ks = np.asarray(report.ks)
    z = float(stats.norm.ppf(0.5 + report.level / 2))
    dense = np.unique(np.round(np.geomspace(ks[0], ks[-1], 200)).astype(int))
    for ax, group in zip(axes.ravel(), groups):
        ax.fill_between(ks, group.acc - z * group.se, group.acc + z * group.se, color="0.55",
                        alpha=0.25, lw=0, step="mid")
        marks = np.unique(np.searchsorted(ks, np.geomspace(ks[0], ks[-1], 40)).clip(0, ks.size - 1))
        ax.errorbar(ks[marks], group.acc[marks], yerr=z * group.se[marks], fmt="o", ms=3.5,
                    color="black", ecolor="0.4", elinewidth=0.8, capsize=1.5, zorder=3,
                    label="exact accuracy, mean over queries")
        for name, fit in group.fits.items():
            if fit is None:
                continue
            color, label = _STYLE.get(name, ("tab:gray", name))
            mean, lo, hi = fit.predict(dense)
            star = " (recommended)" if name == group.recommended else ""
            ax.plot(dense, mean, color=color, lw=2.2 if star else 1.2, label=label + star)
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):  # un-estimable bands are omitted
                ax.fill_between(dense, lo, hi, color=color, alpha=0.15, lw=0)
        ks_ = group.k_star
        ax.axvline(ks_.value, color="black", ls=":", lw=1.2,
                   label=f"K* = {ks_.value} [{ks_.lo}, {ks_.hi}] (argmax {ks_.argmax})")
        if report.fit_max_k is not None:
            ax.axvspan(ks[0], report.fit_max_k, color="0.95", zorder=0,
                       label=f"fitted on K <= {report.fit_max_k}")
        ax.set_xscale("log")
        ax.set_xlim(ks[0] * 0.9, ks[-1] * 1.1)
        ax.set_xlabel("number of LLM calls K")
        ax.set_ylabel(f"{report.method} accuracy")
        lo_d, hi_d = group.d_range
        ax.set_title(f"{group.name}: {group.n_queries} queries, {group.shape}, d in [{lo_d:.2f}, {hi_d:.2f}]",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.ravel()[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(f"{report.method}: accuracy vs number of calls "
                 f"({report.n_queries} queries, {report.level:.0%} bands)", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
