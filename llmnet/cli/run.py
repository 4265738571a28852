"""``llmnet run``: run a network over a dataset, stream results, write a summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, RayOption, SetOption, err, fail, out, parse_sets, user_errors


@user_errors
def run(file: Path = typer.Argument(..., help="network file"),
        data: str = typer.Option(..., "--data", help="arithmetic[:opts], bilevel[:opts], humaneval, mbpp:PATH or a JSONL path"),
        out_dir: Path = typer.Option(..., "--out", help="directory for results.jsonl and summary.json"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N queries only"),
        set_: Optional[list[str]] = SetOption,
        cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite)"),
        no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the cache"),
        max_cost: Optional[float] = typer.Option(None, "--max-cost", help="stop before spending more dollars"),
        concurrency: int = typer.Option(64, "--concurrency", min=1, max=100_000, help="queries in flight at once"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed dataset lines (counted)"),
        seed: int = typer.Option(0, "--seed", help="seeds vote tie-breaks and generated datasets"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
        ray: Optional[str] = RayOption) -> None:
    """Run a network over a dataset. Example: llmnet run graphs/vote.yaml --data arithmetic --limit 20 --out runs/vote"""
    from llmnet.execute import RunConfig, run_network
    from llmnet.network.graph import load_network
    from llmnet.tasks.datasets import load_dataset_counted

    if max_cost is not None and not max_cost >= 0:  # also refuses nan
        fail(["--max-cost must be a number >= 0"])
    if not str(out_dir).strip():
        fail(["--out needs a directory"])
    net = load_network(file, parse_sets(set_))
    queries, bad = load_dataset_counted(data, limit, seed, skip_bad)
    if bad:
        err.print(f"skipped {bad} bad dataset line(s)")
    config = RunConfig(out_dir=out_dir, cache_path=None if no_cache else cache, concurrency=concurrency,
                       max_cost=max_cost, progress=not no_progress and sys.stderr.isatty(), seed=seed, ray=ray,
                       keep_results=False)  # results stream to --out; holding them too costs memory
    try:
        report = run_network(net, queries, config)
    except KeyboardInterrupt:
        err.print(f"interrupted: finished queries are in {out_dir / 'results.jsonl'}; run again to resume")
        raise typer.Exit(130)
    s = report.summary
    s["skipped_bad_lines"] = bad
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.3f}"
    out.print(f"{s['queries']} queries  accuracy {acc}  calls {s['calls']}  cache hits {s['cache_hits']}  "
              f"tokens {s['prompt_tokens']}+{s['completion_tokens']}  cost ${s['cost_usd']:.6f}  errors {s['errors']}")
    if s.get("ray"):
        r = s["ray"]
        out.print(f"ray: {r['workers']} workers on {r['nodes']} node(s), {r['worker_restarts']} restarted")
    if s["stopped"]:
        err.print(f"stopped: {s['stopped']}")
    out.print(f"wrote {out_dir / 'results.jsonl'} and {out_dir / 'summary.json'}")
