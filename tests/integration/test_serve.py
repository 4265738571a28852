"""``llmnet serve`` on loopback: the openai client and DSPy get the answers ``llmnet run`` gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.conftest import GRAPHS, needs_local
from tests.integration.conftest import free_port

pytest.importorskip("orjson", reason="needs the [serve] extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="needs the [serve] extra: pip install -e '.[serve]'")

LLMNET = [sys.executable, "-m", "llmnet"]

SIM_GATED = """
name: sim-gated
models:
  sim: {backend: simulated, model: s, skill: 0.6, price: {input: 2, output: 4}}
  broken: {backend: openai, base_url: "http://127.0.0.1:9/v1", model: x, limits: {retries: 0, timeout: 2}}
task: {prompt: "Question: {question}\\nAnswer:", answer: {kind: number}}
subgraphs:
  cheap: {nodes: {one: {kind: generator, model: sim}}}
  voted:
    nodes:
      gen: {kind: generator, model: sim, samples: 5}
      vote: {kind: vote, inputs: [gen]}
    output: vote
  down: {nodes: {one: {kind: generator, model: broken}}}
nodes:
  route:
    kind: gate
    router:
      kind: rule
      rules:
        - {field: lane, op: eq, value: down, branch: down}
        - {field: question_length, op: gt, value: 6, branch: strong}
      default: cheap
    branches: {cheap: cheap, strong: voted, down: down}
"""


class Server:
    def __init__(self, file: Path, tmp: Path, *extra: str, env: dict | None = None):
        self.port = free_port()
        self.log = (tmp / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen([*LLMNET, "serve", str(file), "--port", str(self.port), "--no-cache", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                     start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llmnet serve exited: {Path(self.log.name).read_text()}")
            try:
                if httpx2.get(self.url + "/models", timeout=1, headers=self.auth()).status_code in (200, 401):
                    return
            except httpx2.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llmnet serve did not start: {Path(self.log.name).read_text()}")

    def auth(self) -> dict:
        return {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(file, *extra, env=None):
        servers.append(Server(file, tmp_path, *extra, env=env))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def llmnet_run(file: Path, data: Path, out: Path) -> dict[str, dict]:
    done = subprocess.run([*LLMNET, "run", str(file), "--data", str(data), "--out", str(out), "--no-cache",
                           "--no-progress"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return {json.loads(line)["id"]: json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()}


def write_questions(path: Path, items: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n" for i, q, a in items))
    return path


QUESTIONS = [("q1", "3 + 4", "7"), ("q2", "12 + 35", "47"), ("q3", "8 + 1", "9"), ("q4", "61 + 27", "88")]


def check_same_as_run(client, url_model, expected):
    for qid, question, answer in QUESTIONS:
        reply = client.chat.completions.create(model=url_model, messages=[{"role": "user", "content": question}],
                                               extra_body={"id": qid, "answer": answer})
        rec = expected[qid]
        extra = reply.model_extra["llmnet"]
        assert reply.choices[0].message.content == (rec["answer"] or "")
        assert extra["branch"] == rec["trace"]["route"]["branch"]
        assert extra["calls"] == rec["calls"] and extra["correct"] == rec["correct"]
        assert reply.usage.prompt_tokens == rec["prompt_tokens"]
        assert reply.usage.completion_tokens == rec["completion_tokens"]
        assert extra["cost_usd"] == pytest.approx(rec["cost_usd"])


def test_openai_client_gets_what_llmnet_run_gives_on_a_simulated_network(serve, tmp_path):
    openai = pytest.importorskip("openai")
    file = tmp_path / "gated.yaml"
    file.write_text(SIM_GATED)
    expected = llmnet_run(file, write_questions(tmp_path / "q.jsonl", QUESTIONS), tmp_path / "run")
    assert {r["trace"]["route"]["branch"] for r in expected.values()} == {"cheap", "strong"}
    server = serve(file)
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["sim-gated"]
    check_same_as_run(client, "sim-gated", expected)

    # /v1/completions and streaming give the same answer
    text = client.completions.create(model="sim-gated", prompt="12 + 35", extra_body={"id": "q2", "answer": "47"})
    assert text.choices[0].text == (expected["q2"]["answer"] or "")
    chunks = list(client.chat.completions.create(model="sim-gated", stream=True, extra_body={"id": "q2", "answer": "47"},
                                                 messages=[{"role": "user", "content": "12 + 35"}]))
    assert [c.choices[0].delta.content for c in chunks] == [expected["q2"]["answer"]]

    # OpenAI-style errors: 400 for a bad request, 404 for another model, 502 with the reason for a dead backend
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="sim-gated", messages=[{"role": "system", "content": "hi"}])
    assert "no user message" in str(bad.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sim-gated", messages=[{"role": "user", "content": "1"}], n=2)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "1"}])
    with pytest.raises(openai.APIStatusError) as down:
        client.chat.completions.create(model="sim-gated", messages=[{"role": "user", "content": "1"}],
                                       extra_body={"lane": "down"})
    assert down.value.status_code in (502, 503) and "Backend" in str(down.value)
    raw = httpx2.post(server.url + "/chat/completions", content=b"{not json", timeout=10)
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"


def test_api_key_is_checked(serve, tmp_path):
    openai = pytest.importorskip("openai")
    file = tmp_path / "gated.yaml"
    file.write_text(SIM_GATED)
    server = serve(file, "--api-key-env", "LLMNET_TEST_KEY", env={"LLMNET_TEST_KEY": "s3cret"})
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0)
    assert good.models.list().data[0].id == "sim-gated"
    assert "s3cret" not in Path(server.log.name).read_text()


@needs_local
@pytest.mark.slow
def test_openai_client_and_dspy_get_llmnet_runs_answers_on_the_bundled_model(serve, tmp_path):
    openai = pytest.importorskip("openai")
    file = GRAPHS / "gated.yaml"
    expected = llmnet_run(file, write_questions(tmp_path / "q.jsonl", QUESTIONS), tmp_path / "run")
    server = serve(file)
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    check_same_as_run(client, "gated", expected)

    pytest.importorskip("dspy", reason="needs the [dspy] extra")
    from llmnet.integrations.dspy import served_lm

    lm = served_lm(server.url, "gated")
    for qid, question, _ in QUESTIONS:
        (out,) = lm(question, extra_body={"id": qid})
        assert out == (expected[qid]["answer"] or "")
