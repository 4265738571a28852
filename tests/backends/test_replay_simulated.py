"""The replay backend (recorded completions, no cost) and the simulated backend's honesty fixes."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmnet import loads_network
from llmnet.backends import make_backend
from llmnet.backends.base import Backend, Completion, Request, Sample
from llmnet.errors import BackendError, DatasetError
from llmnet.execute import RunConfig, run_network
from llmnet.network.spec import AnswerSpec, ReplayModel, SimulatedModel
from llmnet.tasks.answers import extract
from llmnet.tasks.query import Query

SIM = """
models: {m: {backend: simulated, model: s, distractors: 3}}
task: {prompt: "Q: {question}\\nA:", answer: {kind: %s}}
nodes:
  gen: {kind: generator, model: m, samples: 9}
  vote: {kind: vote, inputs: [gen]}
output: vote
"""


def test_replay_jsonl_returns_recorded_samples_by_seed_and_fails_loudly(tmp_path):
    (tmp_path / "r.jsonl").write_text(json.dumps({"prompt": "P", "completions": ["a", "b", "c"]}) + "\n")
    backend = make_backend("r", ReplayModel(backend="replay", model="r", source=str(tmp_path / "r.jsonl")))
    out = asyncio.run(backend.complete(Request(prompt="P", n=2, seed=1)))
    assert [s.text for s in out.samples] == ["b", "c"]
    with pytest.raises(BackendError, match="seed 3"):
        asyncio.run(backend.complete(Request(prompt="P", n=1, seed=3)))
    with pytest.raises(BackendError, match="no recording"):
        asyncio.run(backend.complete(Request(prompt="other")))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "P", "completions": [1]}) + "\n")
    with pytest.raises(DatasetError, match="bad.jsonl:1: 'completions'"):
        make_backend("r", ReplayModel(backend="replay", model="r", source=str(tmp_path / "bad.jsonl")))


class Counting(Backend):
    """A deterministic stand-in for a real model (its identity holds no item fields)."""

    supports_n = True

    @property
    def identity(self) -> str:
        return "fake:counting"

    async def complete(self, request):
        return Completion(tuple(Sample(f" {len(request.prompt) + (request.seed + j) % 3}", 1, 1)
                                for j in range(request.n)))


def test_replay_of_a_cache_file_reproduces_the_recorded_run(tmp_path):
    cache = tmp_path / "c.sqlite"
    queries = [Query(f"q{i}", f"{i} + 1", str(i + 1)) for i in range(6)]
    net = loads_network(SIM % "number")
    first = run_network(net, queries, RunConfig(cache_path=cache, backends={"m": Counting("m", net.spec.models["m"])}))
    replay = SIM.replace("{backend: simulated, model: s, distractors: 3}",
                         "{backend: replay, model: s, source: '%s', identity: 'fake:counting'}" % cache)
    again = run_network(loads_network(replay % "number"), queries, RunConfig(cache_path=None))
    assert [r["trace"]["gen"]["answers"] for r in again.results] == [r["trace"]["gen"]["answers"] for r in first.results]
    assert all(r["error"] is None for r in again.results)
    with pytest.raises(BackendError, match="identity"):
        make_backend("r", ReplayModel(backend="replay", model="r", source=str(cache)))


def test_simulated_choice_wrong_answers_are_other_choices():
    sim = make_backend("m", SimulatedModel(backend="simulated", model="s", distractors=3))
    q = Query("q", "pick", "B", choices=("yes", "no"), p_correct=0.3)
    texts = [s.text.strip() for s in asyncio.run(sim.complete(Request(prompt="p", n=200, query=q, choices=q.choices))).samples]
    assert set(texts) == {"A", "B"}  # wrong answers are the other option, never 'B~1'
    spec = AnswerSpec(kind="choice")
    right = sum(extract(spec, t, q.choices) == "B" for t in texts) / len(texts)
    assert 0.15 < right < 0.45  # a binary-choice simulation is no longer 100% correct
    assert extract(spec, "B~1", ("x", "y")) is None


def test_simulated_cache_identity_covers_item_fields(tmp_path):
    cache = tmp_path / "c.sqlite"
    net = loads_network(SIM % "number")
    easy = [Query(f"q{i}", f"{i} + 1", str(i + 1), p_correct=0.95) for i in range(20)]
    hard = [Query(f"q{i}", f"{i} + 1", str(i + 1), p_correct=0.05) for i in range(20)]
    a = run_network(net, easy, RunConfig(cache_path=cache))
    b = run_network(net, hard, RunConfig(cache_path=cache))
    assert b.summary["cache_hits"] == 0  # same prompts, different p_correct: nothing shared
    acc = [sum(r["correct"] for r in rep.results) / 20 for rep in (a, b)]
    assert acc[0] > 0.8 > 0.2 > acc[1]
