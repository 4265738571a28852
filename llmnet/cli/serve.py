"""``llmnet serve``: a network behind an OpenAI-compatible API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, SetOption, err, fail, parse_sets, user_errors


@user_errors
def serve(file: Path = typer.Argument(..., help="network file"),
          host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
          port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port"),
          api_key_env: Optional[str] = typer.Option(None, "--api-key-env",
                                                    help="require 'Authorization: Bearer $NAME' (the key is read "
                                                         "from this environment variable)"),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="per-sample cache (SQLite)"),
          no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the cache"),
          max_cost: Optional[float] = typer.Option(None, "--max-cost", help="refuse calls (503) past this many dollars"),
          concurrency: int = typer.Option(256, "--concurrency", min=1, help="queries in flight at once"),
          seed: int = typer.Option(0, "--seed", help="seeds vote tie-breaks")) -> None:
    """Serve a network to OpenAI clients. Example: llmnet serve graphs/gated.yaml --port 8000

    GET /v1/models, POST /v1/chat/completions and /v1/completions; the reply's content is the
    network's answer, its 'llmnet' object the branch, calls, cache hits and cost."""
    from llmnet.network.graph import load_network

    try:
        from llmnet.integrations.openai_server import serve as run_server
    except ImportError as exc:
        fail([f"llmnet serve needs the 'serve' extra: pip install 'llmnet-compound[serve]' ({exc.name} is missing)"])
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            fail([f"--api-key-env {api_key_env}: the environment variable is not set or empty"])
    if max_cost is not None and not max_cost >= 0:
        fail(["--max-cost must be a number >= 0"])
    net = load_network(file, parse_sets(set_))
    err.print(f"serving '{net.name}' on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
    run_server(net, host=host, port=port, api_key=api_key, cache=None if no_cache else cache, max_cost=max_cost,
               concurrency=concurrency, seed=seed)
