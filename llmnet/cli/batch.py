"""``llmnet batch``: the calls a run needs as an OpenAI Batch API file, and the answers back into the cache.

    llmnet batch export graphs/vote_vllm.yaml --data arithmetic --limit 100 --out requests.jsonl
    vllm run-batch -i requests.jsonl -o outputs.jsonl --model ...   (or a provider's batch API)
    llmnet batch import outputs.jsonl
    llmnet run graphs/vote_vllm.yaml --data arithmetic --limit 100 --out runs/vote   (no calls)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, SetOption, err, fail, out, parse_sets, user_errors

batch_app = typer.Typer(no_args_is_help=True, help="Batch files: export the calls a run needs (OpenAI Batch API "
                                                   "JSONL), import the answers into the cache.")


@batch_app.command(name="export")
@user_errors
def export(file: Path = typer.Argument(..., help="network file"),
           data: str = typer.Option(..., "--data", help="arithmetic[:opts], bilevel[:opts], humaneval, mbpp:PATH "
                                                        "or a JSONL path"),
           out_path: Path = typer.Option(..., "--out", help="requests JSONL to write"),
           limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N queries only"),
           set_: Optional[list[str]] = SetOption,
           cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite): what it holds "
                                                                     "is not exported"),
           skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed dataset lines (counted)"),
           seed: int = typer.Option(0, "--seed", help="seed of generated datasets")) -> None:
    """Write every sample the run needs and the cache lacks as Batch API request lines.

    Example: llmnet batch export graphs/vote.yaml --data arithmetic --limit 20 --out requests.jsonl
    """
    from llmnet.execute.batch import export_requests
    from llmnet.network.graph import load_network
    from llmnet.tasks.datasets import load_dataset_counted

    if not str(out_path).strip():
        fail(["--out needs a file path"])
    net = load_network(file, parse_sets(set_))
    queries, bad = load_dataset_counted(data, limit, seed, skip_bad)
    if bad:
        err.print(f"skipped {bad} bad dataset line(s)")
    report = export_requests(net, queries, out_path, cache)
    models = ", ".join(f"{m} {n}" for m, n in report.per_model.items()) or "none"
    out.print(f"{report.lines} request lines for {report.samples} samples (by model: {models}); "
              f"{report.complete} of {report.queries} queries already answered by the cache")
    if report.blocked and report.lines:
        err.print(f"{report.blocked} queries wait for these answers; calls that depend on them (judges, gates) "
                  f"are exported after `llmnet batch import` by exporting again")
    out.print(f"wrote {out_path}")


@batch_app.command(name="import")
@user_errors
def import_(outputs: Path = typer.Argument(..., help="Batch API output (or error) JSONL"),
            cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite) to fill")) -> None:
    """Load a Batch API output file into the cache; error lines are counted and asked again by the next export.

    Example: llmnet batch import outputs.jsonl
    """
    from llmnet.execute.batch import import_outputs

    report = import_outputs(outputs, cache)
    out.print(f"{report.lines} lines: {report.samples} samples stored in {cache}, {report.errors} errors, "
              f"{report.foreign} lines not written by llmnet (ignored)")
    for line in report.first_errors:
        err.print(line)
