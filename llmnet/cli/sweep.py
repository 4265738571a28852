"""``llmnet sweep``: run a network at every point of a parameter grid; accuracy, cost, calls per point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, RayOption, SetOption, check_ray, err, out, parse_sets, user_errors


@user_errors
def sweep(file: Path = typer.Argument(..., help="network file"),
          grid: list[str] = typer.Option(..., "--grid", help="NAME=V1,V2,... for any ${NAME} (repeatable)"),
          data: str = typer.Option(..., "--data", help="arithmetic[:opts], bilevel[:opts], humaneval, mbpp:PATH or a JSONL path"),
          out_dir: Path = typer.Option(..., "--out", help="directory for sweep.json, sweep.png and each point's results"),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N queries only"),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite), shared by all points"),
          no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the cache"),
          concurrency: int = typer.Option(64, "--concurrency", min=1, max=100_000, help="queries in flight at once"),
          seed: int = typer.Option(0, "--seed", help="seeds vote tie-breaks and generated datasets"),
          no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
          ray: Optional[str] = RayOption) -> None:
    """Sweep parameters. Example: llmnet sweep graphs/refine_chain.yaml --grid L=0,1,2,4 --data arithmetic:n=40 --out runs/L"""
    from llmnet.execute.sweep import grid_points, parse_grid, sweep as run_sweep, write_sweep
    from llmnet.tasks.datasets import load_dataset

    ray = check_ray(ray)
    parsed = parse_grid(grid)
    queries = load_dataset(data, limit, seed)
    total = len(grid_points(parsed))
    bar = None
    if not no_progress and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(TextColumn("[bold]points"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                       console=err)
        bar.start()
        task = bar.add_task("", total=total)

    def on_point(row: dict) -> None:
        if bar is not None:
            bar.update(task, advance=1, description=f"last: {row['network']} acc {row['accuracy']}")

    try:
        result = run_sweep(file, parsed, queries, params=parse_sets(set_), cache_path=None if no_cache else cache,
                           out_dir=out_dir, concurrency=concurrency, seed=seed, on_point=on_point, ray=ray)
    finally:
        if bar is not None:
            bar.stop()
    for row in result["points"]:
        acc = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.3f} [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]"
        out.print(f"{','.join(f'{k}={v}' for k, v in row['params'].items())}  accuracy {acc}  "
                  f"calls/query {row['calls_per_query'] or 0:.2f}  cache hits {row['cache_hits']}  "
                  f"cost ${row['cost_usd']:.6f}  errors {row['errors']}")
    js, png = write_sweep(result, out_dir)
    out.print(f"wrote {js} and {png}")
