"""A real OpenAI-compatible server for the integration tests: llama-cpp-python's
``llama_cpp.server`` on loopback, serving the bundled SmolLM2-135M GGUF.

The tests skip only when ``llama_cpp.server`` cannot be imported (the ``server`` extra is
not installed); any other failure to start the server is an error, with its log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from llmnet import Network, loads_network
from llmnet.execute import RunConfig, RunReport, run_network
from llmnet.tasks.datasets import load_dataset
from tests.integration.fault_proxy import FaultProxy

START_TIMEOUT_S = 120
K, QUERIES, TIMEOUT_S = 3, 4, 5
PRICE_IN, PRICE_OUT = 0.5, 1.5  # dollars per 1M tokens, made up, to check the arithmetic

NETWORK = """
name: vote-{backend}
models:
  srv:
    backend: {backend}
    base_url: {base_url}
    model: smollm2
    price: {{input: {price_in}, output: {price_out}}}
    limits: {{retries: 4, backoff: 0.05, timeout: {timeout}, concurrency: 1}}
    {extra}
task:
  prompt: |-
    Question: 2 + 3
    Answer: 5
    Question: 14 + 7
    Answer: 21
    Question: {{question}}
    Answer:
  answer: {{kind: number}}
nodes:
  gen: {{kind: generator, model: srv, samples: {k}, temperature: 0.7, max_tokens: 6, stop: ["\\n"]}}
  vote: {{kind: vote, inputs: [gen]}}
output: vote
"""


def vote_network(base_url: str | list[str], *, k: int = K, backend: str = "openai", extra: str = "") -> Network:
    """Vote-k over the real server: few-shot arithmetic, temperature 0.7, max_tokens 6, stop at a newline."""
    return loads_network(NETWORK.format(backend=backend, base_url=json.dumps(base_url), price_in=PRICE_IN,
                                        price_out=PRICE_OUT, timeout=TIMEOUT_S, extra=extra, k=k))


def arithmetic_queries():
    return load_dataset("arithmetic", limit=QUERIES, seed=0)


def run_vote(network: Network, cache_path: Path | None = None) -> RunReport:
    return run_network(network, arithmetic_queries(),
                       RunConfig(cache_path=cache_path, concurrency=QUERIES, progress=False))


def outcome(report: RunReport) -> dict[str, tuple]:
    """Per query: the voted answer and the sampled answers (the samples as the vote saw them)."""
    return {r["id"]: (r["answer"], tuple(r["trace"].get("gen", {}).get("answers", ()))) for r in report.results}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> str:
    """Base URL (``http://127.0.0.1:PORT``, no ``/v1``) of a running ``llama_cpp.server``."""
    pytest.importorskip("llama_cpp.server", reason="llama_cpp.server is not installed: pip install -e '.[server]'")
    from llmnet.backends.local import model_path

    port = free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    # One thread each: llama.cpp's spinning worker threads stall on a shared, busy machine.
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path("smollm2-135m")),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
               "--n_threads", "1", "--n_threads_batch", "1", "--verbose", "False"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx2.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer /v1/models within {START_TIMEOUT_S}s:\n"
                                   f"{_tail(log_path)}")
            time.sleep(0.25)
        # The first completion pages the weights in (seconds on a cold, busy machine): pay it
        # here, so that no test's 5 s timeout fires on it.
        httpx2.post(f"{url}/v1/completions", json={"prompt": "Question: 1 + 1\nAnswer:", "max_tokens": 2},
                    timeout=START_TIMEOUT_S).raise_for_status()
        yield url
    finally:
        _stop(proc)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def proxy(llama_server) -> FaultProxy:
    """One fault proxy for the session, in front of the real server (reset it per test)."""
    with FaultProxy(llama_server) as proxy:
        yield proxy


@pytest.fixture
def fresh_proxy(proxy) -> FaultProxy:
    """The session proxy with zeroed counters and no faults."""
    proxy.reset()
    return proxy


@pytest.fixture(scope="session")
def baseline(proxy) -> dict[str, tuple]:
    """The fault-free outcome of the Vote-3 network through the proxy (no cache)."""
    proxy.reset()
    report = run_vote(vote_network(f"{proxy.url}/v1"))
    assert report.summary["errors"] == 0, [r["error"] for r in report.results]
    assert report.summary["retries"] == proxy.abandoned and proxy.completed == QUERIES * K
    return outcome(report)
