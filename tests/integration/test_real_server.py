"""The HTTP backends against a real OpenAI-compatible server (``llama_cpp.server``, SmolLM2-135M).

Counts come from the fault proxy in front of the server (no faults here): what it
forwarded is what the server computed.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from llmnet.backends import make_backend
from llmnet.backends.base import Request
from llmnet.errors import BackendRejected
from llmnet.network.spec import OpenAIModel, VllmModel
from tests.integration.conftest import PRICE_IN, PRICE_OUT, QUERIES, K, free_port, outcome, run_vote, vote_network

pytestmark = pytest.mark.slow


def test_vote_answers_usage_and_cost(fresh_proxy, baseline):
    report = run_vote(vote_network(f"{fresh_proxy.url}/v1"))
    s = report.summary
    assert s["errors"] == 0 and s["queries"] == QUERIES
    assert outcome(report) == baseline  # seeded samples: the same texts on every run
    for r in report.results:
        sampled = [a for a in r["trace"]["gen"]["answers"] if a is not None]
        assert len(r["trace"]["gen"]["answers"]) == K
        assert r["answer"] is None or Counter(sampled)[r["answer"]] == max(Counter(sampled).values())
        assert r["correct"] == (r["answer"] == r["truth"])
    assert s["prompt_tokens"] > 0 and s["completion_tokens"] > 0
    assert s["prompt_tokens"] == fresh_proxy.prompt_tokens  # what the server itself reported
    assert s["cost_usd"] == pytest.approx((s["prompt_tokens"] * PRICE_IN + s["completion_tokens"] * PRICE_OUT) / 1e6)
    assert sum(r["cost_usd"] for r in report.results) == pytest.approx(s["cost_usd"])
    assert s["per_model"]["srv"]["calls"] == s["calls"] == QUERIES * K == fresh_proxy.completed


def test_cache_second_run_pays_nothing_and_larger_k_pays_only_the_new_samples(fresh_proxy, baseline, tmp_path):
    cache = tmp_path / "cache.sqlite"
    first = run_vote(vote_network(f"{fresh_proxy.url}/v1"), cache)
    assert fresh_proxy.completed == QUERIES * K and first.summary["cache_hits"] == 0
    assert outcome(first) == baseline

    fresh_proxy.reset()
    second = run_vote(vote_network(f"{fresh_proxy.url}/v1"), cache)
    assert fresh_proxy.received == 0  # not one request reached the server
    assert second.summary["cache_hits"] == second.summary["samples"] == QUERIES * K
    assert second.summary["cost_usd"] == 0 and second.summary["calls"] == 0
    assert outcome(second) == baseline

    fresh_proxy.reset()
    bigger = run_vote(vote_network(f"{fresh_proxy.url}/v1", k=K + 2), cache)
    assert fresh_proxy.completed == QUERIES * 2
    assert bigger.summary["cache_hits"] == QUERIES * K
    assert all(tuple(r["trace"]["gen"]["answers"][:K]) == baseline[r["id"]][1] for r in bigger.results)


def test_a_server_that_ignores_n_is_asked_again(fresh_proxy, baseline):
    """llama.cpp answers n=3 with one choice; the executor re-asks with the next seeds."""
    report = run_vote(vote_network(f"{fresh_proxy.url}/v1", extra="supports_n: true"))
    assert report.summary["errors"] == 0
    assert fresh_proxy.completed == fresh_proxy.samples == QUERIES * K  # one choice per request
    assert outcome(report) == baseline  # sample j still drawn with seed base + j


def test_vllm_backend_fails_over_from_a_dead_replica(fresh_proxy, baseline):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    report = run_vote(vote_network([dead, f"{fresh_proxy.url}/v1"], backend="vllm"))
    assert report.summary["errors"] == 0
    assert outcome(report) == baseline
    assert fresh_proxy.completed == QUERIES * K


def test_replica_health_against_a_real_server(llama_server):
    """llama.cpp has no /health: the probe falls back to /v1/models."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    spec = VllmModel(backend="vllm", model="smollm2", base_url=[f"{llama_server}/v1", dead])
    backend = make_backend("srv", spec)

    async def go():
        try:
            return await backend.check_health()
        finally:
            await backend.aclose()

    assert asyncio.run(go()) == {f"{llama_server}/v1": True, dead: False}


@pytest.mark.parametrize("api", ["completion", "chat"])
def test_one_call_per_api(llama_server, api):
    backend = make_backend("srv", OpenAIModel(backend="openai", model="smollm2", base_url=f"{llama_server}/v1"))

    async def go():
        try:
            return await backend.complete(Request(prompt="Question: 2 + 2\nAnswer:", api=api, max_tokens=4,
                                                  temperature=0.0, seed=1))
        finally:
            await backend.aclose()

    out = asyncio.run(go())
    assert len(out.samples) == 1 and isinstance(out.samples[0].text, str)
    assert out.samples[0].prompt_tokens > 0 and out.samples[0].completion_tokens > 0


def test_a_wrong_route_is_rejected_not_retried(llama_server):
    backend = make_backend("srv", OpenAIModel(backend="openai", model="smollm2", base_url=f"{llama_server}/nope"))

    async def go():
        try:
            await backend.complete(Request(prompt="hi", max_tokens=2))
        finally:
            await backend.aclose()

    with pytest.raises(BackendRejected, match="404"):
        asyncio.run(go())
