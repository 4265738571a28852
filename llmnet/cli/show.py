"""``llmnet show DIR``: any output folder (run, scale, smart, complexity eval) as tables.

A run folder (``summary.json``) gets purpose-made tables: accuracy with its 95% interval,
errors by type, cost, calls, cache hits, then one row per node, per model and per gate
branch. The other folders (``scaling.json``, ``smart.json``, ``report.json``) are shown
generically, so they stay readable as their wings add fields: scalars as a two-column
table, every list of records and every mapping of records as a table of its own.
``--json`` prints the folder's JSON instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from llmnet.cli.common import out, user_errors
from llmnet.errors import LlmnetError

KNOWN = ("summary.json", "scaling.json", "smart.json", "report.json")
MAX_ROWS = 40


def _load(path: Path) -> tuple[Path, dict[str, Any]]:
    if path.is_file():
        target = path
    elif path.is_dir():
        found = [path / name for name in KNOWN if (path / name).is_file()]
        if not found:
            raise LlmnetError(f"{path}: no {', '.join(KNOWN)} here; give an output folder of llmnet run, scale, "
                              f"smart or complexity eval")
        target = found[0]
    else:
        raise LlmnetError(f"{path}: no such folder")
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LlmnetError(f"{target}: not a JSON file llmnet wrote ({type(exc).__name__}); was it cut short?") from None
    if not isinstance(data, dict):
        raise LlmnetError(f"{target}: expected a JSON object")
    return target, data


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return "" if value is None else str(value)


def _table(title: str, rows: list[dict[str, Any]], first: str | None = None) -> Table:
    columns: list[str] = [first] if first else []
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, (dict, list)):
                columns.append(key)
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(escape(col), justify="left" if col == first else "right")
    for row in rows[:MAX_ROWS]:
        table.add_row(*(escape(_fmt(row.get(c))) for c in columns))
    if len(rows) > MAX_ROWS:
        table.caption = f"{len(rows) - MAX_ROWS} more rows: see --json"
    return table


def run_tables(s: dict[str, Any]) -> list[Table]:
    """The tables of a run's summary.json."""
    ci = s.get("accuracy_ci95")
    acc = "n/a" if s.get("accuracy") is None else (
        f"{s['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
    head = Table(title=f"run: {s.get('network', '?')}", title_justify="left", show_header=False)
    head.add_column(justify="left")
    head.add_column(justify="right")
    rows = [("queries", s.get("queries")), ("accuracy (95% CI), answered queries", acc),
            ("answered / correct", f"{s.get('graded')} / {s.get('correct')}"),
            ("accuracy counting errors wrong", s.get("accuracy_all")), ("errors", s.get("errors")),
            ("cost (USD)", s.get("cost_usd")), ("calls / attempts / retries",
                                               f"{s.get('calls')} / {s.get('attempts')} / {s.get('retries')}"),
            ("samples / cache hits", f"{s.get('samples')} / {s.get('cache_hits')}"),
            ("tokens (prompt + completion)", f"{s.get('prompt_tokens')} + {s.get('completion_tokens')}"),
            ("complete", s.get("complete")), ("stopped", s.get("stopped"))]
    for key, value in rows:
        head.add_row(escape(key), escape(_fmt(value)))
    tables = [head]
    errors = s.get("errors_by_type") or {}
    if errors:
        tables.append(_table("errors by type", [{"type": k, **v} for k, v in errors.items()], "type"))
    for section, label in (("per_node", "node"), ("per_model", "model")):
        if s.get(section):
            tables.append(_table(f"per {label}", [{label: k, **v} for k, v in s[section].items()], label))
    for gate, counts in (s.get("branches") or {}).items():
        tables.append(_table(f"gate {gate}: branches", [{"branch": b, "queries": n} for b, n in counts.items()],
                             "branch"))
    return tables


def generic_tables(title: str, data: dict[str, Any]) -> list[Table]:
    """Scalars as one table; each list of records and each mapping of records as its own."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    tables = []
    if scalars:
        head = Table(title=title, title_justify="left", show_header=False)
        head.add_column(justify="left")
        head.add_column(justify="right")
        for k, v in scalars.items():
            head.add_row(escape(k), escape(_fmt(v)))
        tables.append(head)
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            tables.append(_table(key, value))
        elif isinstance(value, dict) and value and all(isinstance(r, dict) for r in value.values()):
            tables.append(_table(key, [{"name": k, **r} for k, r in value.items()], "name"))
        elif isinstance(value, dict) and value:
            tables.extend(generic_tables(key, value))
    return tables


@user_errors
def show(folder: Path = typer.Argument(..., help="an output folder (run, scale, smart, complexity eval) or its JSON"),
         as_json: bool = typer.Option(False, "--json", help="print the JSON instead of tables")) -> None:
    """Print an output folder as tables. Example: llmnet show runs/vote"""
    target, data = _load(folder)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    tables = run_tables(data) if target.name == "summary.json" else generic_tables(target.name, data)
    for table in tables:
        out.print(table)
