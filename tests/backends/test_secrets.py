"""An API key in the environment reaches the server and nowhere else.

A network whose model is ``backend: openai`` with ``api_key_env`` runs against a fake
OpenAI-compatible server on loopback. The server proves the key was really sent (the
positive control); then the key must be absent from results.jsonl, summary.json, the
cache's bytes (SQLite and its -wal/-shm), stdout, stderr, every log record (DEBUG for
openai, httpx, httpx2, httpcore, llmnet), the error messages of a failing run (the fake
server echoes the key back in its 401, as OpenAI does), and repr() of backend and spec.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmnet import loads_network
from llmnet.backends import make_backend
from llmnet.cli.main import app
from tests.conftest import ROOT

SECRET = "sk-test-SECRET-123-9f8e7d6c5b4a3210"
ENV = "LLMNET_TEST_KEY"
LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "llmnet")

NET = """
name: secret-net
models:
  m:
    backend: openai
    model: fake-model
    base_url: "http://127.0.0.1:%d/v1"
    api_key_env: LLMNET_TEST_KEY
    limits: {retries: 0, timeout: 10}
task: {prompt: "Question: {question}\\nAnswer:"}
nodes:
  gen: {kind: generator, model: m, samples: 2, max_tokens: 4}
  vote: {kind: vote, inputs: [gen]}
output: vote
"""


class FakeOpenAI(ThreadingHTTPServer):
    """``POST /v1/completions``: a valid completion with usage, or (``status=401``) the
    error OpenAI sends for a wrong key, with the key echoed in its message."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 200
        self.authorizations: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        auth = self.headers.get("Authorization", "")
        self.server.authorizations.append(auth)
        if self.server.status == 401:
            key = auth.removeprefix("Bearer ")
            reply = {"error": {"message": f"Incorrect API key provided: {key}. You can find your API key "
                                          f"at https://platform.openai.com/account/api-keys.",
                               "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
        else:
            reply = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body.get("model"),
                     "choices": [{"index": 0, "text": " 4", "finish_reason": "stop", "logprobs": None}],
                     "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}
        data = json.dumps(reply).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = FakeOpenAI()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def files(tmp_path, server):
    net = tmp_path / "net.yaml"
    net.write_text(NET % server.server_address[1])
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"{i} + 2", "answer": str(i + 2)}) + "\n"
                            for i in range(3)))
    return net, data, tmp_path / "out", tmp_path / "cache" / "samples.sqlite"


@pytest.fixture
def debug_logs(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def run_in_process(net, data, out, cache):
    args = ["run", str(net), "--data", str(data), "--out", str(out), "--cache", str(cache), "--no-progress"]
    return CliRunner().invoke(app, args, env={ENV: SECRET})


def assert_nowhere(*places: str | bytes) -> None:
    for place in places:
        text = place if isinstance(place, str) else place.decode("utf-8", "replace")
        assert SECRET not in text
        assert SECRET[len("sk-test-"):] not in text   # not even without its prefix


def written(out: Path, cache: Path) -> list[bytes]:
    """Every byte llmnet left on disk: the run's directory and the cache with its WAL."""
    paths = [p for p in out.rglob("*") if p.is_file()]
    paths += [p for p in cache.parent.glob(cache.name + "*") if p.is_file()]
    assert paths, "the run wrote nothing"
    return [p.read_bytes() for p in paths]


def log_text(caplog) -> list[str]:
    return [caplog.text] + [repr(r.args) + r.getMessage() for r in caplog.records]


def test_a_good_run_keeps_the_key_to_the_server(server, files, debug_logs):
    net, data, out, cache = files
    res = run_in_process(*files)
    assert res.exit_code == 0, res.output
    assert server.authorizations and set(server.authorizations) == {f"Bearer {SECRET}"}   # it was sent
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in results] == [False, False, True] and all(r["error"] is None for r in results)
    assert any(r.name.startswith(("openai", "httpx")) for r in debug_logs.records)    # logging was on
    assert_nowhere(res.stdout, res.stderr, *written(out, cache), *log_text(debug_logs))


def test_a_rejected_key_is_reported_without_the_key(server, files, debug_logs):
    net, data, out, cache = files
    server.status = 401
    res = run_in_process(*files)
    assert res.exit_code == 3, res.output                          # per-query errors: the run goes on, exits 3
    assert set(server.authorizations) == {f"Bearer {SECRET}"}
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    errors = [r["error"] for r in results]
    assert all("HTTP 401" in e and "Incorrect API key provided" in e for e in errors), errors
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"] == 3 and "errors 3" in res.stdout
    assert_nowhere(res.stdout, res.stderr, *errors, *written(out, cache), *log_text(debug_logs))


def test_a_missing_key_names_the_variable_not_a_value(files):
    net, data, out, cache = files
    res = CliRunner().invoke(app, ["run", str(net), "--data", str(data), "--out", str(out), "--cache", str(cache)],
                             env={ENV: "", "OPENAI_API_KEY": SECRET})
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert "environment variable LLMNET_TEST_KEY is not set" in line
    assert_nowhere(res.stdout, res.stderr)


def test_repr_of_backend_spec_and_network(server, monkeypatch):
    monkeypatch.setenv(ENV, SECRET)
    network = loads_network(NET % server.server_address[1])
    spec = network.spec.models["m"]
    backend = make_backend("m", spec)
    assert backend._client.api_key == SECRET                       # the SDK client holds it, as it must
    assert_nowhere(repr(backend), str(backend), backend.identity, repr(spec), repr(network.spec),
                   repr(network), network.to_yaml(), json.dumps(spec.model_dump()))


@pytest.mark.parametrize("status", [200, 401])
def test_real_process_output_with_sdk_debug_logging(server, files, status):
    """The CLI in a real process, with the SDK's own debug logging switched on."""
    net, data, out, cache = files
    server.status = status
    env = {**os.environ, ENV: SECRET, "OPENAI_LOG": "debug", "HTTPX_LOG_LEVEL": "trace"}
    res = subprocess.run([sys.executable, "-m", "llmnet", "run", net, "--data", data, "--out", out,
                          "--cache", cache], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert res.returncode == (0 if status == 200 else 3), res.stderr  # 3: queries ended in error
    assert "Traceback" not in res.stderr and server.authorizations
    assert "HTTP Request" in res.stderr or "Request options" in res.stderr   # the SDK did log
    assert_nowhere(res.stdout, res.stderr, *written(out, cache))
