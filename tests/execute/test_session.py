"""One query at a time: network.ainvoke / invoke / session share one engine and raise failures."""

import asyncio

import pytest

from llmnet import Query, loads_network, run_network
from llmnet.errors import BackendError, DatasetError, LlmnetError
from llmnet.execute import RunConfig
from llmnet.execute.session import as_query

NET = """
name: gated
models:
  sim: {backend: simulated, model: s, skill: 0.7, latency_s: 0.01, price: {input: 1, output: 2},
        limits: {concurrency: 3}}
  dead: {backend: openai, base_url: "http://127.0.0.1:9/v1", model: x, limits: {retries: 0, timeout: 2}}
subgraphs:
  cheap: {nodes: {one: {kind: generator, model: sim}}}
  voted:
    nodes:
      gen: {kind: generator, model: sim, samples: 5}
      vote: {kind: vote, inputs: [gen]}
    output: vote
  down: {nodes: {one: {kind: generator, model: dead}}}
nodes:
  route:
    kind: gate
    router:
      kind: rule
      rules: [{field: lane, op: eq, value: down, branch: down}, {field: question_length, op: gt, value: 6, branch: strong}]
      default: cheap
    branches: {cheap: cheap, strong: voted, down: down}
"""

QUERIES = [Query(f"q{i}", f"{i} + {i * 7}", str(i * 8)) for i in range(30)]


def test_ainvoke_equals_a_run_query_by_query():
    net = loads_network(NET)
    expected = {r["id"]: r for r in run_network(net, QUERIES, RunConfig(progress=False)).results}

    async def main():
        return await asyncio.gather(*(net.ainvoke(q) for q in QUERIES))

    for got in asyncio.run(main()):
        rec = expected[got.query.id]
        assert got.answer == rec["answer"] and got.correct == rec["correct"]
        assert got.branch == rec["trace"]["route"]["branch"] and got.branches == {"route": got.branch}
        assert got.usage.calls == rec["calls"] and got.usage.cost_usd == pytest.approx(rec["cost_usd"])


def test_a_session_shares_its_cache_and_limits_across_calls(tmp_path):
    net = loads_network(NET)

    async def main():
        async with net.session(cache=tmp_path / "c.sqlite") as s:
            first = await asyncio.gather(*(s.ainvoke(q) for q in QUERIES))
            again = await s.ainvoke(QUERIES[5])
            peak = s.engine.models["sim"].max_in_flight
        return first, again, s, peak

    first, again, session, peak = asyncio.run(main())
    assert again.answer == first[5].answer and again.usage.calls == 0 and again.usage.cache_hits >= 1
    assert peak <= 3  # the model's concurrency limit holds across concurrent invocations
    assert session.queries == 31 and session.total.calls == sum(r.usage.calls for r in first)
    with pytest.raises(LlmnetError):
        asyncio.run(session.ainvoke("1 + 1"))  # closed


def test_invoke_blocks_and_reuses_one_engine():
    net = loads_network(NET)
    a = net.invoke({"question": "1 + 2", "id": "x", "answer": "3"})
    b = net.invoke({"question": "1 + 2", "id": "x", "answer": "3"})
    assert a.answer == b.answer and a.branch == "cheap"
    from llmnet.execute.session import _BLOCKING

    assert id(net) in _BLOCKING  # one background session per network


def test_a_failed_query_raises_its_error():
    net = loads_network(NET)
    with pytest.raises(BackendError):
        net.invoke({"question": "1", "lane": "down"})


def test_as_query_accepts_strings_mappings_and_queries():
    q = as_query("3 + 4")
    assert q.question == "3 + 4" and q.id == as_query("3 + 4").id != as_query("3 + 5").id
    assert as_query({"question": "x", "answer": 5, "lane": "a"}).fields == {"lane": "a"}
    assert as_query(QUERIES[0]) is QUERIES[0]
    with pytest.raises(DatasetError):
        as_query({"answer": "1"})
    with pytest.raises(DatasetError):
        as_query(3)
