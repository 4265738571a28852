"""``llmnet run``: run a network over a dataset, stream results, write a summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from rich.markup import escape

from llmnet.cli.common import DEFAULT_CACHE, RayOption, SetOption, check_ray, err, fail, local_model_problems, one_line, parse_sets, user_errors
from llmnet.cli.common import out as stdout


EXIT_QUERY_ERRORS = 3  # the run finished, but some queries ended in error (see README: exit codes)


@user_errors
def run(file: Path = typer.Argument(..., help="network file"),
        data: str = typer.Option(..., "--data", help="arithmetic[:opts], bilevel[:opts], humaneval, mbpp:PATH or a JSONL path"),
        out: str = typer.Option(..., "--out", help="folder for results.jsonl and summary.json (one run per folder)"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N queries only"),
        set_: Optional[list[str]] = SetOption,
        cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite)"),
        no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the cache"),
        max_cost: Optional[float] = typer.Option(None, "--max-cost", help="stop before spending more dollars"),
        concurrency: int = typer.Option(64, "--concurrency", min=1, max=100_000, help="queries in flight at once"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed dataset lines (counted)"),
        seed: int = typer.Option(0, "--seed", help="seeds vote tie-breaks and generated datasets"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace another run found in --out"),
        allow_errors: bool = typer.Option(False, "--allow-errors", help="exit 0 even if some queries ended in error"),
        keep_text: bool = typer.Option(False, "--keep-text", help="store every sample's raw completion in the trace"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
        ray: Optional[str] = RayOption) -> None:
    """Run a network over a dataset. Example: llmnet run graphs/vote.yaml --data arithmetic --limit 20 --out runs/vote

    Exit codes: 0 every query answered; 3 the run finished but some queries ended in error
    (--allow-errors gives 0); 2 a mistake in the input (nothing was called); 130 interrupted.
    Run the same command again to resume: finished queries are kept, errored ones retried.
    """
    from llmnet.execute import RunConfig, run_network
    from llmnet.execute.outdir import check_out_dir
    from llmnet.network.graph import load_network
    from llmnet.tasks.datasets import load_dataset_counted

    ray = check_ray(ray)
    if max_cost is not None and not (0 <= max_cost < float("inf")):  # also refuses nan and inf
        fail(["--max-cost must be a number >= 0 (finite)"])
    check_out_dir(Path(out) if out.strip() else Path(""), given=out)
    out_dir = Path(out)
    net = load_network(file, parse_sets(set_))
    queries, bad = load_dataset_counted(data, limit, seed, skip_bad)
    check_prompt_fields(net, queries, data)
    if bad:
        err.print(f"skipped {bad} bad dataset line(s)")
    config = RunConfig(out_dir=out_dir, cache_path=None if no_cache else cache, concurrency=concurrency,
                       max_cost=max_cost, progress=not no_progress and sys.stderr.isatty(), seed=seed,
                       overwrite=overwrite, log=lambda line: err.print(escape(line)), keep_text=keep_text,
                       ray=ray, keep_results=False)  # results stream to --out; holding them too costs memory
    try:
        report = run_network(net, queries, config)
    except KeyboardInterrupt:
        err.print(f"interrupted: finished queries are in {out_dir / 'results.jsonl'}; run again to resume")
        raise typer.Exit(130)
    s = report.summary
    s["skipped_bad_lines"] = bad
    if s["accuracy"] is None:
        acc = "n/a"
    else:
        lo, hi = s["accuracy_ci95"]
        acc = f"{s['accuracy']:.3f} [95% CI {lo:.3f}-{hi:.3f}] over {s['graded']} answered"
    stdout.print(f"{s['queries']} queries  accuracy {acc}  errors {s['errors']}  calls {s['calls']}  "
              f"cache hits {s['cache_hits']}  tokens {s['prompt_tokens']}+{s['completion_tokens']}  "
              f"cost ${s['cost_usd']:.6f}")
    if s.get("ray"):
        r = s["ray"]
        stdout.print(f"ray: {r['workers']} workers on {r['nodes']} node(s), {r['worker_restarts']} restarted")
    if s["stopped"]:
        err.print(f"stopped: {escape(one_line(s['stopped']))}")
    stdout.print(f"wrote {out_dir / 'results.jsonl'} and {out_dir / 'summary.json'}")
    if s["errors"]:
        report_errors(s)
        if not allow_errors:
            raise typer.Exit(EXIT_QUERY_ERRORS)


def report_errors(summary: dict) -> None:
    """The failed queries on stderr: the count, then each type of error once with its first example."""
    acc_all = summary.get("accuracy_all")
    tail = f"; accuracy counting them wrong: {acc_all:.3f}" if acc_all is not None else ""
    err.print(f"[red]{summary['errors']} of {summary['queries']} queries ended in error[/red]{tail}")
    for kind, info in summary["errors_by_type"].items():
        err.print(f"  {info['count']} x {escape(kind)}, e.g. query {escape(one_line(str(info['example_id'])))}: "
                  f"{escape(one_line(info['example']))}")
    err.print("  run the same command again to retry them, or add --allow-errors to exit 0")


def prompt_field_problems(net, queries: list, data: str, file=None) -> list[str]:
    """One line per prompt field that the dataset lacks (with a did-you-mean)."""
    from llmnet.network.templates import missing_fields

    return [f"{file or net.source or 'network'}: {where}: the prompt uses {{{name}}} but dataset '{data}' has no "
            f"such field{hint}" for where, name, hint in missing_fields(net, queries)]


def check_prompt_fields(net, queries: list, data: str) -> None:
    """Every field the prompts use exists in the dataset and every local model exists, before the first call."""
    problems = local_model_problems(net) + prompt_field_problems(net, queries, data)
    if problems:
        fail(problems)


@user_errors
def validate_data(data: str) -> list:
    """The dataset for ``validate --data`` (a bad dataset argument is one error line)."""
    from llmnet.tasks.datasets import load_dataset

    return load_dataset(data)
