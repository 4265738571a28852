"""Batch export/import with the vLLM-like server double: n per prompt, judges in a second round,
error lines, foreign lines. (The real-server round trip is tests/integration/test_batch.py.)"""

from __future__ import annotations

import json

import httpx2
import pytest

from llmnet import loads_network
from llmnet.backends.vllm import VllmBackend
from llmnet.errors import DatasetError
from llmnet.execute import RunConfig, run_network
from llmnet.execute.batch import export_requests, import_outputs, parse_custom_id
from llmnet.tasks.query import Query
from tests.backends.vllm_server import VllmLikeServer

URL = "http://r0:8000/v1"
QUERIES = [Query(f"q{i}", f"{i} + 2", str(i + 2)) for i in range(5)]


def network(judge: bool = False):
    nodes = ("gen: {kind: generator, model: m, samples: 4}\n  vote: {kind: filter_vote, model: m, inputs: [gen]}"
             if judge else "gen: {kind: generator, model: m, samples: 4}\n  vote: {kind: vote, inputs: [gen]}")
    return loads_network(f"""
models: {{m: {{backend: vllm, model: m, base_url: "{URL}", top_k: 5}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes:
  {nodes}
""")


def backend(server: VllmLikeServer) -> VllmBackend:
    return VllmBackend("m", network().spec.models["m"], http_client=server.client())


def provider(server: VllmLikeServer, requests, outputs, broken: int | None = None) -> int:
    """Answer a batch file with the server double, as ``vllm run-batch`` would; line ``broken`` fails."""
    lines = [json.loads(raw) for raw in requests.read_text().splitlines()]
    with outputs.open("w") as fh:
        for i, line in enumerate(lines):
            if i == broken:
                fh.write(json.dumps({"id": f"r{i}", "custom_id": line["custom_id"], "error": None,
                                     "response": {"status_code": 500, "body": {"error": {"message": "OOM"}}}}) + "\n")
                continue
            answer = server(httpx2.Request("POST", f"http://r0:8000{line['url']}", json=line["body"]))
            fh.write(json.dumps({"id": f"r{i}", "custom_id": line["custom_id"], "error": None,
                                 "response": {"status_code": answer.status_code, "body": answer.json()}}) + "\n")
        fh.write(json.dumps({"custom_id": "someone-else", "response": {"status_code": 200, "body": {}}}) + "\n")
    return len(lines)


def test_one_line_per_prompt_with_n_then_zero_calls(tmp_path):
    server = VllmLikeServer()
    cache, requests, outputs = tmp_path / "c.sqlite", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    direct = run_network(network(), QUERIES, RunConfig(progress=False, backends={"m": backend(server)}))
    report = export_requests(network(), QUERIES, requests, cache)
    lines = [json.loads(raw) for raw in requests.read_text().splitlines()]
    assert report.lines == len(QUERIES) and report.samples == 4 * len(QUERIES)
    assert all(line["body"]["n"] == 4 and line["body"]["seed"] == 0 and line["body"]["top_k"] == 5 for line in lines)
    assert all(line["url"] == "/v1/completions" and line["method"] == "POST" for line in lines)
    provider(server, requests, outputs)
    imported = import_outputs(outputs, cache)
    assert (imported.samples, imported.errors, imported.foreign) == (4 * len(QUERIES), 0, 1)
    before = len(server.bodies)
    replay = run_network(network(), QUERIES, RunConfig(cache_path=cache, progress=False,
                                                       backends={"m": backend(server)}))
    assert len(server.bodies) == before and replay.summary["calls"] == 0
    assert [r["trace"]["gen"]["answers"] for r in replay.results] == \
        [r["trace"]["gen"]["answers"] for r in direct.results]
    # the server's remarks travelled through the batch file too
    assert replay.results[0]["trace"]["gen"]["server"][0]["served_model"] == "m"


def test_calls_that_depend_on_answers_come_in_a_second_round(tmp_path):
    server = VllmLikeServer()
    cache, requests, outputs = tmp_path / "c.sqlite", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    rounds = []
    for _ in range(4):
        report = export_requests(network(judge=True), QUERIES, requests, cache)
        rounds.append(report.lines)
        if not report.lines:
            break
        provider(server, requests, outputs)
        import_outputs(outputs, cache)
    assert rounds[0] == len(QUERIES)        # the generators
    assert rounds[1] > 0 and rounds[-1] == 0  # then the judge calls on their candidates, then nothing
    before = len(server.bodies)
    replay = run_network(network(judge=True), QUERIES, RunConfig(cache_path=cache, progress=False,
                                                                 backends={"m": backend(server)}))
    assert replay.summary["calls"] == 0 and replay.summary["errors"] == 0 and len(server.bodies) == before


def test_an_error_line_is_exported_again(tmp_path):
    server = VllmLikeServer()
    cache, requests, outputs = tmp_path / "c.sqlite", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    export_requests(network(), QUERIES, requests, cache)
    broken = json.loads(requests.read_text().splitlines()[2])["custom_id"]
    provider(server, requests, outputs, broken=2)
    imported = import_outputs(outputs, cache)
    assert imported.errors == 1 and "HTTP 500" in imported.first_errors[0] and "OOM" in imported.first_errors[0]
    again = export_requests(network(), QUERIES, requests, cache)
    assert [json.loads(raw)["custom_id"] for raw in requests.read_text().splitlines()] == [broken]
    assert again.complete == len(QUERIES) - 1 and again.blocked == 1


def test_custom_ids_and_bad_files(tmp_path):
    key = "a" * 64
    assert parse_custom_id(f"llmnet:{key}:7") == (key, 7, False)
    assert parse_custom_id(f"llmnet:{key}:7:j") == (key, 7, True)
    for foreign in ("x", f"llmnet:{key}", f"llmnet:{key[:-1]}:7", f"llmnet:{key}:seven", 12, None):
        assert parse_custom_id(foreign) is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "x"}\nnot json\n')
    with pytest.raises(DatasetError, match="bad.jsonl:2: not a JSON line"):
        import_outputs(bad, tmp_path / "c.sqlite")


def test_an_import_waits_for_a_key_another_process_is_paying_for(tmp_path):
    """An import claims each key as a run does, so a run paying for it commits its rows first and
    the import's come after (kept or, for the same seeds, said and ignored), never between."""
    import subprocess
    import sys
    import time

    server = VllmLikeServer()
    cache, requests, outputs = tmp_path / "c.sqlite", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    export_requests(network(), QUERIES[:1], requests, cache)
    provider(server, requests, outputs)
    key = json.loads(requests.read_text().splitlines()[0])["custom_id"].split(":")[1]
    holder = subprocess.Popen([sys.executable, "-c", f"import time\nfrom llmnet.execute.cache import SampleCache\n"
                               f"c = SampleCache({str(cache)!r})\nprint(c.claim({key!r}), flush=True)\n"
                               f"time.sleep(1.5)\nc.close()\n"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() != "0"
    start = time.monotonic()
    imported = import_outputs(outputs, cache)
    assert imported.samples == 4 and time.monotonic() - start > 1.0  # waited for the holder's claim
    holder.communicate(timeout=60)
