"""The ``llmnet`` command: a thin layer over library functions.

A user's mistake prints one line per problem (file:line:col: yaml.path: what and how to
fix) and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer >= 0.25 vendors click as typer._click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_errors

from llmnet.errors import LlmnetError, SpecError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def one_line(text: str) -> str:
    """Escape line breaks and other control characters, so one problem is one line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in str(text))


class _OneLineErrors(TyperGroup):
    """Usage mistakes (bad option values, unknown options) as one ``error:`` line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            sys.stderr.write(exc.ctx.get_help() + "\n")
            rv = 2
        except click_errors.ClickException as exc:
            err.print(f"[red]error:[/red] {escape(one_line(exc.format_message()))} (see --help)")
            rv = exc.exit_code
        except typer.Abort:
            rv = 130
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="llmnet: compound-inference networks of LLM calls, declared in YAML.")
_state = {"debug": False}

SetOption = typer.Option(None, "--set", help="override a parameter, e.g. --set K=15 (repeatable)")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    _state["debug"] = debug


def fail(problems: list[str], code: int = 2) -> None:
    for line in problems:
        err.print(f"[red]error:[/red] {escape(one_line(line))}", markup=True, highlight=False)
    raise typer.Exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn llmnet's errors into one line each and exit 2 (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LlmnetError, OSError) as exc:  # a user's mistake or an unusable path: one line, exit 2
            if _state["debug"]:
                raise
            if isinstance(exc, SpecError):
                fail([p.format() for p in exc.problems])
            fail([str(exc) if not isinstance(exc, OSError) else f"{exc.filename or ''}: {exc.strerror or exc}"])

    return wrapper


def parse_sets(sets: Optional[list[str]]) -> dict[str, Any]:
    from llmnet.loader import parse_overrides

    return parse_overrides(sets)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="network files"),
             set_: Optional[list[str]] = SetOption) -> None:
    """Check network files without calling any model. Example: llmnet validate graphs/*.yaml"""
    from llmnet.graph import load_network

    lines: list[str] = []
    for file in files:
        try:
            net = load_network(file, parse_sets(set_))
        except SpecError as exc:
            if _state["debug"]:
                raise
            lines += [p.format() for p in exc.problems]
            continue
        n = sum(1 for _ in net.walk())
        out.print(f"[green]ok[/green] {file}: {net.name} ({n} nodes, output '{net.output}')")
    if lines:
        fail(lines)


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--out", "-o", help="write to a file instead of stdout")) -> None:
    """Print the JSON schema of network files (for editor completion). Example: llmnet schema -o llmnet.schema.json"""
    from llmnet.spec import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@app.command()
@user_errors
def graph(file: Path, png: Optional[Path] = typer.Option(None, "--png", help="also draw a PNG here"),
          set_: Optional[list[str]] = SetOption) -> None:
    """Draw a network: Mermaid text on stdout, and a PNG with --png. Example: llmnet graph graphs/gated.yaml --png g.png"""
    from llmnet.draw import draw_png, mermaid
    from llmnet.graph import load_network

    net = load_network(file, parse_sets(set_))
    sys.stdout.write(mermaid(net))
    if png:
        try:
            draw_png(net, png)
        except ImportError:
            err.print("matplotlib is not installed: no PNG drawn")
        else:
            err.print(f"wrote {png}")


DEFAULT_CACHE = Path(".llmnet-cache/samples.sqlite")


@app.command()
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
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Run a network over a dataset. Example: llmnet run graphs/vote.yaml --data arithmetic --limit 20 --out runs/vote"""
    from llmnet.datasets import load_dataset_counted
    from llmnet.execute import RunConfig, run_network
    from llmnet.graph import load_network

    if max_cost is not None and not max_cost >= 0:  # also refuses nan
        fail(["--max-cost must be a number >= 0"])
    if not str(out_dir).strip():
        fail(["--out needs a directory"])
    net = load_network(file, parse_sets(set_))
    queries, bad = load_dataset_counted(data, limit, seed, skip_bad)
    if bad:
        err.print(f"skipped {bad} bad dataset line(s)")
    config = RunConfig(out_dir=out_dir, cache_path=None if no_cache else cache, concurrency=concurrency,
                       max_cost=max_cost, progress=not no_progress and sys.stderr.isatty(), seed=seed)
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
    if s["stopped"]:
        err.print(f"stopped: {s['stopped']}")
    out.print(f"wrote {out_dir / 'results.jsonl'} and {out_dir / 'summary.json'}")


@app.command()
@user_errors
def scale(file: Path = typer.Argument(..., help="a Vote (generator + vote) or Filter-Vote network"),
          data: str = typer.Option(..., "--data", help="dataset"),
          ks: str = typer.Option("1,3,5,...,99", "--k", help="Ks to evaluate, e.g. 1,3,5,...,1000 or 1-50"),
          pool: int = typer.Option(..., "--pool", min=1, max=100_000, help="M samples drawn per query (once)"),
          out_dir: Path = typer.Option(..., "--out", help="writes scaling.json and scaling.png"),
          fit_max_k: Optional[int] = typer.Option(None, "--fit-max-k", min=1, help="fit on K <= this, predict the rest"),
          buckets: str = typer.Option("easy_hard", "--buckets", help="easy_hard (d < 0 / d > 0) or quantile"),
          limit: Optional[int] = typer.Option(None, "--limit", min=1),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
          no_cache: bool = typer.Option(False, "--no-cache")) -> None:
    """Accuracy against the number of calls K, per difficulty bucket, with fitted laws and K*.

    Example: llmnet scale graphs/vote.yaml --data arithmetic:n=60,digits=1-2 --k 1,3,5,...,49 --pool 50 --fit-max-k 5 --out runs/scale
    """
    from llmnet.datasets import load_dataset
    from llmnet.graph import load_network
    from llmnet.scaling import parse_ks, run_scaling

    if buckets not in ("easy_hard", "quantile"):
        fail([f"--buckets must be easy_hard or quantile, not '{buckets}'"])
    k_list = parse_ks(ks)
    net = load_network(file, parse_sets(set_))
    queries = load_dataset(data, limit)
    result = run_scaling(net, queries, k_list, pool, out_dir, None if no_cache else cache, fit_max_k, buckets,
                         progress=sys.stderr.isatty())
    out.print(f"{result['queries']} queries x {pool} samples ({result['method']}); calls {result['calls']}, "
              f"cache hits {result['cache_hits']}")
    out.print(f"wrote {out_dir / 'scaling.json'} and {out_dir / 'scaling.png'}")


@app.command()
@user_errors
def smart(file: Path = typer.Argument(..., help="network file holding the reference and the candidates"),
          data: str = typer.Option(..., "--data", help="dataset (items are taken in this order)"),
          reference: str = typer.Option(..., "--reference", help="subgraph or model whose answers are the target"),
          candidates: str = typer.Option(..., "--candidates", help="comma-separated subgraphs or models"),
          accuracy: float = typer.Option(0.95, "--accuracy", help="target agreement with the reference, 1 - delta"),
          confidence: float = typer.Option(0.95, "--confidence", help="gamma: probability the target holds"),
          mix: bool = typer.Option(False, "--mix", help="mix models on the remaining items (LP over shares)"),
          bound: str = typer.Option("clopper-pearson", "--bound", help="clopper-pearson (paper) or anytime"),
          out_dir: Path = typer.Option(..., "--out", help="writes smart.json, smart.png and plan.json"),
          limit: Optional[int] = typer.Option(None, "--limit"),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
          no_cache: bool = typer.Option(False, "--no-cache"),
          check: bool = typer.Option(True, "--check-agreement/--no-check-agreement",
                                     help="also run the reference on applied items to measure the realised agreement"),
          cost: str = typer.Option("auto", "--cost", help="auto (dollars if priced, else tokens), usd or tokens")) -> None:
    """SMART: profile cheaper candidates against a reference, then use the cheapest that is good enough.

    Example: llmnet smart graphs/smart_local.yaml --data arithmetic:n=300 --reference strong --candidates cheap,mid --out runs/smart
    """
    from llmnet.datasets import load_dataset
    from llmnet.graph import load_network
    from llmnet.smart_run import run_smart, save_smart

    if not 0 < accuracy < 1 or not 0 < confidence < 1:
        fail(["--accuracy and --confidence must be between 0 and 1"])
    if bound not in ("clopper-pearson", "anytime"):
        fail([f"--bound must be clopper-pearson or anytime, not '{bound}'"])
    if cost not in ("auto", "usd", "tokens"):
        fail([f"--cost must be auto, usd or tokens, not '{cost}'"])
    names = [c.strip() for c in candidates.split(",") if c.strip()]
    if not names:
        fail(["--candidates needs at least one name"])
    net = load_network(file, parse_sets(set_))
    queries = load_dataset(data, limit)
    result, details = run_smart(net, queries, reference, names, delta=1 - accuracy, gamma=confidence, bound=bound,
                                mix=mix, cache_path=None if no_cache else cache, check_agreement=check,
                                measure=cost)
    paths = save_smart(result, details, out_dir)
    agree = "n/a" if result.realised_agreement is None else f"{result.realised_agreement:.3f}"
    out.print(f"profiled {result.profiled}/{result.n_items} items; plan {dict(result.plan.counts) or 'reference'}; "
              f"cost {result.total_cost:.6g} vs reference-only {result.reference_cost:.6g} {details['cost_unit']} "
              f"(savings x{result.savings:.2f}); realised agreement {agree}")
    out.print(f"wrote {paths['json']}, {paths['png']} and {paths['plan']}")


from llmnet.complexity.cli import complexity_app  # noqa: E402  (sub-commands register after the core ones)

app.add_typer(complexity_app, name="complexity")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
