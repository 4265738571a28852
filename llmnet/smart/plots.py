"""SMART's picture: each profiled candidate's bounds over the items, and where it was decided."""

from __future__ import annotations

import numpy as np

from llmnet.smart.session import SmartResult, Status

__all__ = ["plot_bounds"]


def plot_bounds(result: SmartResult, path) -> None:
    """Each profiled candidate's lower/upper bound against items profiled, the
    ``1 - delta`` line, and where each was marked satisfied / invalid / cut off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(c.name for c in result.history))
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    marker = {"bound": {Status.SATISFIED: "^", Status.INVALID: "v"}, "early-termination": {Status.INVALID: "x"}}
    for i, name in enumerate(names):
        color = colors[i % len(colors)]
        items, lo, hi = result.bounds(name)
        d = next(d for d in result.decisions if d.name == name)
        label = f"{name}: {d.status.value}" + (f" at {d.at_item} ({d.reason})" if d.at_item is not None else "")
        ax.fill_between(items, lo, hi, color=color, alpha=0.15, step="post")
        ax.step(items, lo, where="post", color=color, label=label)
        ax.step(items, hi, where="post", color=color, lw=0.8, ls="--")
        sym = marker.get(d.reason, {}).get(d.status)
        if sym and d.at_item is not None:
            j = min(int(np.searchsorted(items, d.at_item)), len(items) - 1)
            ax.plot([d.at_item], [lo[j] if d.status is Status.SATISFIED else hi[j]], sym, color=color,
                    ms=9, mec="black")
    ax.axhline(1.0 - result.delta, color="black", lw=1, label=f"1 - delta = {1 - result.delta:.2f}")
    ax.axvline(result.profiled, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("items profiled")
    ax.set_ylabel("agreement with reference")
    ax.set_ylim(max(0.0, 1.0 - 4 * result.delta), 1.0)
    ax.set_title(f"SMART, {result.bound} bounds (lower solid, upper dashed), gamma={result.gamma}\n"
                 "^ satisfied, v invalid, x cut off by early termination", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
