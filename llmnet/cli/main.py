"""The ``llmnet`` command: a thin layer over library functions.

A user's mistake prints one line per problem (file:line:col: yaml.path: what and how to
fix) and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli import run, scale, serve, show, smart, sweep
from llmnet.cli.batch import batch_app
from llmnet.cli.common import (SetOption, OneLineErrors, cli_state, err, fail, local_model_problems, out, parse_sets,
                               user_errors)
from llmnet.cli.complexity import complexity_app
from llmnet.errors import SpecError

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="llmnet: compound-inference networks of LLM calls, declared in YAML.")

def _print_version(value: bool) -> None:
    if value:
        from llmnet import __version__

        out.print(f"llmnet {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors"),
          version: bool = typer.Option(False, "--version", help="print llmnet's version and exit", is_eager=True,
                                       callback=_print_version)) -> None:
    cli_state["debug"] = debug


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="network files"),
             set_: Optional[list[str]] = SetOption,
             data: Optional[str] = typer.Option(None, "--data", help="also check the prompts' fields against "
                                                                     "this dataset")) -> None:
    """Check network files without calling any model. Example: llmnet validate graphs/*.yaml --data arithmetic"""
    from llmnet.network.graph import load_network

    lines: list[str] = []
    queries = run.validate_data(data) if data else None
    for file in files:
        try:
            net = load_network(file, parse_sets(set_))
            problems = local_model_problems(net)
            problems += run.prompt_field_problems(net, queries, data, file) if queries is not None else []
        except SpecError as exc:
            if cli_state["debug"]:
                raise
            lines += [p.format() for p in exc.problems]
            continue
        if problems:
            lines += problems
            continue
        n = sum(1 for _ in net.walk())
        out.print(f"[green]ok[/green] {file}: {net.name} ({n} nodes, output '{net.output}')")
    if lines:
        fail(lines)


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--out", "-o", help="write to a file instead of stdout")) -> None:
    """Print the JSON schema of network files (for editor completion). Example: llmnet schema -o llmnet.schema.json"""
    from llmnet.network.spec import json_schema

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
    from llmnet.network.draw import draw_png, mermaid
    from llmnet.network.graph import load_network

    net = load_network(file, parse_sets(set_))
    sys.stdout.write(mermaid(net))
    if png:
        try:
            draw_png(net, png)
        except ImportError:
            err.print("matplotlib is not installed: no PNG drawn")
        else:
            err.print(f"wrote {png}")


app.command(name="run")(run.run)
app.command(name="show")(show.show)
app.command(name="scale")(scale.scale)
app.command(name="smart")(smart.smart)
app.command(name="serve")(serve.serve)
app.command(name="sweep")(sweep.sweep)
app.add_typer(complexity_app, name="complexity")
app.add_typer(batch_app, name="batch")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
