"""One query at a time: network.ainvoke / invoke / session share one engine and raise failures."""

import asyncio

import pytest

from llmnet import Query, loads_network, run_network
from llmnet.errors import BackendError, DatasetError, LlmnetError
from llmnet.execute import RunConfig
from llmnet.execute.cache import SampleCache
from llmnet.execute.session import as_query, default_session

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
    from llmnet.execute import session as module

    sessions = module._DEFAULT[module._BACKGROUND.loop]
    assert list(k for k in sessions if k[0] == id(net)) == [(id(net), None)]  # one engine for both calls
    assert sessions[(id(net), None)].queries == 2


def test_ainvoke_has_no_cache_by_default_and_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = loads_network(NET)

    async def main():
        first = await net.ainvoke("1 + 2")
        again = await net.ainvoke("1 + 2")
        return first, again, default_session(net)

    first, again, session = asyncio.run(main())
    assert session.cache is None and session.queries == 2
    assert first.usage.calls == again.usage.calls == 1 and again.usage.cache_hits == 0  # each call pays
    assert list(tmp_path.iterdir()) == []


def test_ainvoke_with_a_cache_shares_one_engine_and_hits_on_repeats(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = loads_network(NET)

    async def main():
        first = await asyncio.gather(*(net.ainvoke(q, cache="c.sqlite") for q in QUERIES))
        again = await net.ainvoke(QUERIES[5], cache=tmp_path / "c.sqlite")  # same file, spelled another way
        session = default_session(net, "c.sqlite")
        return first, again, session, default_session(net)

    first, again, session, uncached = asyncio.run(main())
    assert session.queries == 31 and session.engine.models["sim"].max_in_flight <= 3  # limits shared by all calls
    assert session.total.calls == sum(r.usage.calls for r in first) > 0
    assert again.answer == first[5].answer and again.usage.calls == 0 and again.usage.cache_hits >= 1
    assert uncached is not session and uncached.queries == 0  # no cache is another engine

    async def later():  # a new loop, a new session: the samples were on disk when each call returned
        return await net.ainvoke(QUERIES[7], cache=tmp_path / "c.sqlite")

    replay = asyncio.run(later())
    assert replay.answer == first[7].answer and replay.usage.calls == 0 and replay.usage.cache_hits >= 1
    blocking = net.invoke(QUERIES[9], cache=str(tmp_path / "c.sqlite"))
    assert blocking.answer == first[9].answer and blocking.usage.calls == 0


def test_ainvoke_uses_a_given_sample_cache_and_leaves_it_open(tmp_path):
    net = loads_network(NET)
    cache = SampleCache(tmp_path / "c.sqlite")

    async def main():
        a = await net.ainvoke("4 + 5", cache=cache)
        b = await net.ainvoke("4 + 5", cache=cache)
        return a, b, default_session(net, cache)

    try:
        a, b, session = asyncio.run(main())
        assert session.cache is cache and b.usage.calls == 0 and b.usage.cache_hits == a.usage.calls == 1
        assert len(cache) >= 1  # still open: the session did not close what it did not open
    finally:
        cache.close()
    with pytest.raises(LlmnetError, match="cache must be"):
        asyncio.run(net.ainvoke("4 + 5", cache=42))


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


def test_session_and_server_import_only_public_names():
    """session.py and the OpenAI server use other modules' public helpers, never their private ones."""
    import ast
    from pathlib import Path

    import llmnet

    root = Path(llmnet.__file__).parent
    for rel in ("execute/session.py", "integrations/openai_server.py"):
        tree = ast.parse((root / rel).read_text())
        private = [f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   for a in node.names if a.name.startswith("_")]
        assert private == [], f"{rel} imports private names: {private}"


def test_public_helpers_validate_records_and_plain_traces():
    from llmnet.execute.engine import plain_trace
    from llmnet.execute.usage import Usage
    from llmnet.tasks.datasets import query_from_record

    q = query_from_record({"question": "2 + 2", "answer": 4, "lane": "x"}, "here")
    assert (q.id, q.answer, q.fields) == ("here", "4", {"lane": "x"})
    with pytest.raises(DatasetError, match="here: 'question' must be a string"):
        query_from_record({"question": 3}, "here")
    usage = Usage()
    usage.calls = 2
    plain = plain_trace({"gen": {"usage": usage, "branch": "a"}})
    assert plain == {"gen": {"usage": usage.to_dict(), "branch": "a"}} and plain["gen"]["usage"]["calls"] == 2


def test_engines_sharing_a_cache_writer_never_pay_twice_and_commit_together(tmp_path):
    # Two engines over one cache in one process (as `complexity label` runs its tiers): the second
    # sees the first's fresh, not yet committed samples, and the first's aclose commits both.
    from llmnet.execute.engine import Engine

    net = loads_network("models: {sim: {backend: simulated, model: s}}\ntask: {prompt: 'Q: {question}'}\n"
                        "nodes:\n  gen: {kind: generator, model: sim, samples: 5}\n")
    cache = SampleCache(tmp_path / "c.sqlite")
    first, second = Engine(net, cache), Engine(net, cache)
    second.share(first)

    async def main():
        a = await first.run_query(QUERIES[0])
        b = await second.run_query(QUERIES[0])
        await first.aclose()
        return a, b

    a, b = asyncio.run(main())
    assert a["calls"] == 1 and b["calls"] == 0 and b["cache_hits"] == 5
    assert len(cache) == 5
    cache.close()
    with pytest.raises(LlmnetError, match="same cache"):
        Engine(net, None).share(first)


def test_a_usage_as_a_dict_has_every_field_in_order_rounded_and_reads_back():
    from llmnet.execute.usage import FIELDS, Usage

    usage = Usage(1, 2, 3, 4, 5, 6, 0.12345678901234, 0.1234567891, 7, 8, 0.5, 9)
    plain = usage.to_dict()
    assert list(plain) == list(FIELDS) and plain["calls"] == 1 and plain["server_cached_tokens"] == 9
    assert plain["cost_usd"] == 0.123456789 and plain["latency_s"] == 0.123457 and plain["cached_cost_usd"] == 0.5
    assert Usage(**plain).to_dict() == plain
