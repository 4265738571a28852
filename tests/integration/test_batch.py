"""Batch files against a real server: export -> llama_cpp.server -> Batch output -> import -> run.

The test plays the provider: it sends each exported line's body to the real server at the
line's ``url`` and writes the answer in the OpenAI Batch output format. After the import,
``llmnet run`` must make no call at all and give the answers of a direct run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from llmnet.execute.batch import export_requests, import_outputs
from tests.conftest import ROOT
from tests.integration.conftest import QUERIES, K, arithmetic_queries, outcome, run_vote, vote_network

pytestmark = pytest.mark.slow


def send(requests: Path, server: str, outputs: Path, fail_ids: tuple[str, ...] = ()) -> list[dict]:
    """Run a batch file the way a provider does; ``fail_ids`` get error lines instead of answers."""
    lines = [json.loads(raw) for raw in requests.read_text().splitlines()]
    with outputs.open("w") as fh:
        for i, line in enumerate(lines):
            assert line["method"] == "POST" and set(line) == {"custom_id", "method", "url", "body"}
            if line["custom_id"] in fail_ids:
                record = {"id": f"batch_req_{i}", "custom_id": line["custom_id"], "response": None,
                          "error": {"code": "server_error", "message": "the batch worker crashed"}}
            else:
                answer = httpx2.post(f"{server}{line['url']}", json=line["body"], timeout=60)
                record = {"id": f"batch_req_{i}", "custom_id": line["custom_id"], "error": None,
                          "response": {"status_code": answer.status_code, "request_id": f"req_{i}",
                                       "body": answer.json()}}
            fh.write(json.dumps(record) + "\n")
    return lines


def test_export_send_import_then_run_makes_no_call(llama_server, tmp_path):
    network = vote_network(f"{llama_server}/v1")
    direct = run_vote(network)  # no cache: every sample from the server
    assert direct.summary["errors"] == 0

    cache, requests, outputs = tmp_path / "cache.sqlite", tmp_path / "requests.jsonl", tmp_path / "outputs.jsonl"
    report = export_requests(network, arithmetic_queries(), requests, cache)
    assert report.lines == report.samples == QUERIES * K  # the openai backend takes no n: a line per seed
    assert report.blocked == QUERIES and report.complete == 0
    lines = send(requests, llama_server, outputs, fail_ids=())
    seeds = sorted(line["body"]["seed"] for line in lines)
    assert seeds == sorted(list(range(K)) * QUERIES)

    imported = import_outputs(outputs, cache)
    assert (imported.samples, imported.errors, imported.foreign) == (QUERIES * K, 0, 0)
    again = export_requests(network, arithmetic_queries(), tmp_path / "nothing.jsonl", cache)
    assert again.lines == 0 and again.complete == QUERIES
    assert (tmp_path / "nothing.jsonl").read_text() == ""

    replay = run_vote(network, cache)
    assert replay.summary["calls"] == 0 and replay.summary["attempts"] == 0
    assert replay.summary["cache_hits"] == QUERIES * K
    assert outcome(replay) == outcome(direct)
    assert replay.summary["prompt_tokens"] == 0  # nothing paid now; what the batch cost is the cached part
    assert replay.summary["cached_tokens"] == direct.summary["prompt_tokens"] + direct.summary["completion_tokens"]


def test_error_lines_are_exported_again_by_the_cli(llama_server, tmp_path):
    """Through the command line: an error line stores nothing and the next export asks for it again."""
    net = tmp_path / "net.yaml"
    network = vote_network(f"{llama_server}/v1")
    net.write_text(network.to_yaml())
    cache, requests, outputs = tmp_path / "cache.sqlite", tmp_path / "requests.jsonl", tmp_path / "outputs.jsonl"
    base = [sys.executable, "-m", "llmnet", "batch"]
    data = ["--data", "arithmetic", "--limit", "2", "--cache", str(cache)]
    exported = subprocess.run([*base, "export", str(net), *data, "--out", str(requests)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    assert f"{2 * K} request lines" in exported.stdout
    first = json.loads(requests.read_text().splitlines()[0])["custom_id"]
    send(requests, llama_server, outputs, fail_ids=(first,))
    imported = subprocess.run([*base, "import", str(outputs), "--cache", str(cache)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert f"{2 * K - 1} samples stored" in imported.stdout and "1 errors" in imported.stdout
    assert "the batch worker crashed" in imported.stderr
    again = subprocess.run([*base, "export", str(net), *data, "--out", str(requests)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [json.loads(raw)["custom_id"] for raw in requests.read_text().splitlines()] == [first]


def test_export_refuses_a_backend_without_a_batch_api(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text("models: {sim: {backend: simulated, model: s}}\nnodes: {gen: {kind: generator, model: sim}}\n")
    done = subprocess.run([sys.executable, "-m", "llmnet", "batch", "export", str(net), "--data", "arithmetic",
                           "--limit", "2", "--out", str(tmp_path / "r.jsonl"), "--cache", str(tmp_path / "c.sqlite")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "has no batch API" in done.stderr and "Traceback" not in done.stderr
