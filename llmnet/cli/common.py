"""Helpers every command group shares: one-line errors, consoles, ``--set`` parsing."""

from __future__ import annotations

import functools
import re
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


class OneLineErrors(TyperGroup):
    """Usage mistakes (bad option values, unknown options) as one ``error:`` line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _plain_flags(self)
        args = ray_argv(list(sys.argv[1:] if args is None else args))
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


def _plain_flags(command: Any) -> None:
    """Show boolean flags as plain flags in --help (``--no-progress``, not ``--no-progress <bool>``)."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None and not getattr(make_help, "_plain", False):
        def plain_help(ctx: Any, _make: Any = make_help) -> Any:
            option = _make(ctx)
            if option is not None:
                option.metavar = ""
            return option

        plain_help._plain = True  # type: ignore[attr-defined]
        command.get_help_option = plain_help
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


cli_state = {"debug": False}
DEFAULT_CACHE = Path(".llmnet-cache/samples.sqlite")
SetOption = typer.Option(None, "--set", help="override a parameter, e.g. --set K=15 (repeatable)")
RayOption = typer.Option(None, "--ray", metavar="[ADDRESS]", help="shard queries over Ray workers: bare --ray starts "
                         "a local Ray ($RAY_ADDRESS if set), --ray HOST:PORT, ray://HOST:PORT or auto joins a "
                         "cluster (pip install 'llmnet-compound\\[ray]')")
RAY_FLAG = "--ray"
# what may follow --ray as its value: Ray's address forms; anything else (an option, a file) is not one
_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|\[[0-9A-Fa-f:.]+\]:\d+|[A-Za-z0-9_.\-]+:\d+)$")


def ray_argv(args: list[str]) -> list[str]:
    """``--ray [ADDRESS]``: an option whose value may be left out.

    Click options take a value or none, never either, so before click parses, a ``--ray`` not
    followed by an address (``auto``, ``local``, ``HOST:PORT``, ``[IPV6]:PORT``, ``ray://...``)
    becomes ``--ray=``, i.e. Ray's default: ``$RAY_ADDRESS`` when set, else a new local Ray. So
    ``--ray`` can go anywhere, even before the network file, and ``--ray=ADDRESS`` always takes
    ADDRESS as it is. Nothing after ``--`` is touched.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        if arg == RAY_FLAG and not (i + 1 < len(args) and _RAY_ADDRESS.match(args[i + 1])):
            arg = RAY_FLAG + "="
        out.append(arg)
    return out


def check_ray(value: Optional[str]) -> Optional[str]:
    """``--ray``'s value, checked before any work: ray is installed and the address has Ray's form."""
    if value is None:
        return None
    from llmnet.execute.cluster import host_port, import_ray

    import_ray()
    if value.strip() not in ("", "auto", "local"):
        host_port(value.strip())
    return value


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
            if cli_state["debug"]:
                raise
            if isinstance(exc, SpecError):
                fail([p.format() for p in exc.problems])
            fail([str(exc) if not isinstance(exc, OSError) else f"{exc.filename or ''}: {exc.strerror or exc}"])

    return wrapper


def parse_sets(sets: Optional[list[str]]) -> dict[str, Any]:
    from llmnet.network.loader import parse_overrides

    return parse_overrides(sets)




def local_model_problems(net: Any) -> list[str]:
    """Model mistakes caught before any call: a ``local`` model that is neither bundled nor an
    existing .gguf file; credentials in a ``base_url``."""
    import difflib

    from llmnet.backends.local import BUNDLED

    from llmnet.backends.openai_compat import has_credentials

    problems = []
    for name in sorted(net.models_used()):
        spec = net.spec.models[name]
        urls = getattr(spec, "base_url", None) or []
        if any(has_credentials(u) for u in ([urls] if isinstance(urls, str) else urls)):
            problems.append(f"{net.source or 'network'}: models.{name}.base_url: holds credentials (user:password@), "
                            f"which would be sent as Basic auth; put the key in an environment variable and name "
                            f"it with api_key_env")
        if spec.backend != "local" or spec.model in BUNDLED:
            continue
        path = Path(spec.model).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            continue
        close = difflib.get_close_matches(spec.model, BUNDLED, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        what = "no such file" if path.suffix == ".gguf" else "neither a bundled model nor a .gguf file"
        problems.append(f"{net.source or 'network'}: models.{name}.model: local model '{spec.model}': {what} "
                        f"(bundled: {', '.join(BUNDLED)}){hint}")
    return problems


class LiveProgress:
    """A rich progress display on stderr for long commands: a bar when ``update(done, total)`` is
    called, else a spinner with the elapsed time. Draws nothing when disabled or not a terminal."""

    def __init__(self, label: str, enabled: bool = True):
        self.label, self.enabled = label, enabled and err.is_terminal
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "LiveProgress":
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Progress(SpinnerColumn(), TextColumn(f"[bold]{escape(self.label)}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def update(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
