"""Sweep any ``${PARAM}`` of a network file: accuracy with a 95% interval, cost and calls per point.

``llmnet scale`` studies Vote's K; a sweep runs the whole network once per point of a grid
(the cartesian product of every ``NAME=v1,v2,...``), through the shared per-sample cache,
so a longer chain or a bigger tournament pays only for the calls the shorter one did not
make. Accuracy's interval is Wilson's score interval for a binomial proportion (graded
queries only), which keeps its coverage near 95% at small n and near 0 or 1, where the
normal (Wald) interval does not.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmnet.errors import Problem, SpecError
from llmnet.execute.run import RunConfig, arun
from llmnet.network.graph import load_network
from llmnet.network.loader import parse_overrides
from llmnet.tasks.query import Query

Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["L=1,2,4", "T=0.2,0.7"]`` -> ``{"L": [1, 2, 4], "T": [0.2, 0.7]}`` (values typed as YAML scalars)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not values:
            raise SpecError(Problem("--grid", "", f"'{item}' is not NAME=V1,V2,... (e.g. --grid L=1,2,4,8)"))
        if name.strip() in grid:
            raise SpecError(Problem("--grid", "", f"parameter '{name.strip()}' is given twice"))
        grid[name.strip()] = [parse_overrides([f"{name.strip()}={v}"])[name.strip()] for v in values]
    if not grid:
        raise SpecError(Problem("--grid", "", "give at least one --grid NAME=V1,V2,..."))
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _label(point: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


async def asweep(path: str | Path, grid: Mapping[str, Sequence[Any]], queries: list[Query], *,
                 params: Mapping[str, Any] | None = None, cache_path: Path | None = None,
                 out_dir: Path | None = None, concurrency: int = 64, seed: int = 0,
                 backends: Mapping[str, Any] | None = None, on_point: Any = None, ray: Any = None) -> dict[str, Any]:
    """Run the network file at every grid point on ``queries``; returns the sweep as plain data.

    Every point is loaded and validated before any runs, so a bad value fails before money is
    spent. With ``out_dir``, each point's results go to ``out_dir/points/NAME=V,...``. ``ray``: run
    each point on Ray workers (``RunConfig.ray``), Ray joined (or started) once for all points.
    """
    options = dict(params=params, cache_path=cache_path, out_dir=out_dir, concurrency=concurrency, seed=seed,
                   backends=backends, on_point=on_point, ray=ray)
    if ray is None:
        return await _asweep(path, grid, queries, **options)
    from llmnet.execute.cluster import ray_session

    with ray_session(ray):
        return await _asweep(path, grid, queries, **options)


async def _asweep(path: str | Path, grid: Mapping[str, Sequence[Any]], queries: list[Query], *,
                  params: Mapping[str, Any] | None, cache_path: Path | None, out_dir: Path | None, concurrency: int,
                  seed: int, backends: Mapping[str, Any] | None, on_point: Any, ray: Any) -> dict[str, Any]:
    points = grid_points(grid)
    networks = [load_network(path, {**dict(params or {}), **p}) for p in points]
    rows = []
    for point, network in zip(points, networks):
        config = RunConfig(out_dir=out_dir / "points" / _label(point) if out_dir else None, cache_path=cache_path,
                           concurrency=concurrency, progress=False, seed=seed, keep_results=False,
                           backends=dict(backends) if backends else None, ray=ray)
        s = (await arun(network, queries, config)).summary
        low, high = wilson_interval(s["correct"], s["graded"])
        rows.append({"params": point, "network": network.name, "accuracy": s["accuracy"], "ci95": [low, high],
                     "correct": s["correct"], "graded": s["graded"], "queries": s["queries"], "errors": s["errors"],
                     "calls": s["calls"], "calls_per_query": s["calls"] / s["queries"] if s["queries"] else None,
                     "samples": s["samples"], "cache_hits": s["cache_hits"], "prompt_tokens": s["prompt_tokens"],
                     "completion_tokens": s["completion_tokens"], "cost_usd": s["cost_usd"],
                     "cost_without_cache_usd": round(s["cost_usd"] + s["cached_cost_usd"], 10),
                     "stopped": s["stopped"]})
        if on_point is not None:
            on_point(rows[-1])
    return {"file": str(path), "grid": {k: list(v) for k, v in grid.items()}, "queries": len(queries),
            "interval": "Wilson score, 95%", "points": rows}


def sweep(path: str | Path, grid: Mapping[str, Sequence[Any]], queries: list[Query], **options: Any) -> dict[str, Any]:
    """Blocking ``asweep``."""
    return asyncio.run(asweep(path, grid, queries, **options))


def plot_sweep(result: Mapping[str, Any], path: str | Path) -> None:
    """Accuracy (with its 95% band) against the grid's first parameter, one line per setting of
    the others; a second panel shows calls per query."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["grid"])
    x_name, others = names[0], names[1:]
    lines: dict[str, list[Mapping[str, Any]]] = {}
    for row in result["points"]:
        lines.setdefault(_label({k: row["params"][k] for k in others}), []).append(row)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in result["grid"][x_name])
    for label, rows in lines.items():
        xs = [r["params"][x_name] for r in rows] if numeric else list(range(len(rows)))
        acc = [r["accuracy"] if r["accuracy"] is not None else float("nan") for r in rows]
        ax.plot(xs, acc, marker="o", label=label or None)
        ax.fill_between(xs, [r["ci95"][0] for r in rows], [r["ci95"][1] for r in rows], alpha=0.2)
        ax2.plot(xs, [r["calls_per_query"] or 0 for r in rows], marker="o", label=label or None)
        if not numeric:
            for a in (ax, ax2):
                a.set_xticks(xs, [str(r["params"][x_name]) for r in rows])
    ax.set(xlabel=x_name, ylabel="accuracy (95% Wilson interval)", ylim=(0, 1),
           title=f"{Path(result['file']).name}: {result['queries']} queries")
    ax2.set(xlabel=x_name, ylabel="model calls per query", title="cost")
    if others:
        ax.legend(title=",".join(others))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_sweep(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``out_dir/sweep.json`` and ``out_dir/sweep.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, png = out_dir / "sweep.json", out_dir / "sweep.png"
    js.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_sweep(result, png)
    return js, png
