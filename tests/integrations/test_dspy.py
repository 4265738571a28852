"""A DSPy module that runs an llmnet network (offline, simulated models)."""

import asyncio

import pytest

pytest.importorskip("dspy", reason="needs the [dspy] extra: pip install -e '.[dspy]'")

from llmnet import loads_network  # noqa: E402
from llmnet.integrations.dspy import NetworkModule  # noqa: E402

NET = """
name: gated
models: {sim: {backend: simulated, model: s, skill: 0.8, price: {input: 1, output: 1}}}
subgraphs:
  cheap: {nodes: {one: {kind: generator, model: sim}}}
  voted:
    nodes:
      gen: {kind: generator, model: sim, samples: 5}
      vote: {kind: vote, inputs: [gen]}
    output: vote
nodes:
  route:
    kind: gate
    router: {kind: rule, rules: [{field: question_length, op: gt, value: 6, branch: strong}], default: cheap}
    branches: {cheap: cheap, strong: voted}
"""


def test_module_forward_gives_answer_branch_and_usage():
    module = NetworkModule(loads_network(NET))
    short = module(question="1 + 2", id="a", answer="3")
    long = module(question="10 + 20", id="b", answer="30")
    assert short.branch == "cheap"
    assert long.branch == "strong" and long.usage["samples"] == 5 and long.usage["cost_usd"] > 0
    assert short.answer is not None and short.correct in (True, False)


def test_module_async_matches_sync_and_is_usable_inside_a_program():
    net = loads_network(NET)

    class Program(__import__("dspy").Module):
        def __init__(self):
            super().__init__()
            self.net = NetworkModule(net)

        def forward(self, question, id):
            first = self.net(question=question, id=id, answer="30")
            return first

    sync = Program()(question="10 + 20", id="b")

    async def main():
        return await NetworkModule(net, cache=None).acall(question="10 + 20", id="b", answer="30")

    asynced = asyncio.run(main())
    assert asynced.answer == sync.answer and asynced.branch == sync.branch == "strong"


def test_module_with_its_own_session_options_runs_blocking_too(tmp_path):
    module = NetworkModule(loads_network(NET), cache=tmp_path / "c.sqlite")
    first = module(question="10 + 20", id="b", answer="30")
    again = module(question="10 + 20", id="b", answer="30")
    assert first.answer == again.answer and first.usage["calls"] == 1
    assert again.usage["calls"] == 0 and again.usage["cache_hits"] == 5  # the session's cache served it


def test_module_with_a_cache_pays_once_and_without_one_pays_every_time(tmp_path, monkeypatch):
    """``cache=`` means what it means for ``network.invoke``: the same question asked again is answered
    from the cache (sync, async on new event loops, a SampleCache object); the default, no cache, pays
    again and writes no file."""
    import sqlite3

    from llmnet.execute.cache import SampleCache

    ask = {"question": "10 + 20", "id": "b", "answer": "30"}
    module = NetworkModule(loads_network(NET), cache=tmp_path / "c.sqlite")
    first, again = module(**ask), module(**ask)
    assert first.usage["calls"] == 1 and first.usage["cache_hits"] == 0 and first.usage["cost_usd"] > 0
    assert again.usage["calls"] == 0 and again.usage["cache_hits"] == 5 and again.usage["cost_usd"] == 0
    assert again.answer == first.answer and again.branch == first.branch == "strong"
    for _ in range(2):  # a new event loop each time
        hit = asyncio.run(module.acall(**ask))
        assert hit.usage["calls"] == 0 and hit.usage["cache_hits"] == 5 and hit.answer == first.answer
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 5
    store = SampleCache(tmp_path / "o.sqlite")  # an open cache: used as given, left open
    try:
        mine = NetworkModule(loads_network(NET), cache=store)
        assert asyncio.run(mine.acall(**ask)).usage["calls"] == 1
        assert asyncio.run(mine.acall(**ask)).usage["cache_hits"] == 5 and mine(**ask).usage["calls"] == 0
        assert len(store) == 5
    finally:
        store.close()
    # the default: every call pays, blocking and async, and no file is written
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    plain = NetworkModule(loads_network(NET))
    assert [plain(**ask).usage["calls"] for _ in range(2)] == [1, 1]
    assert [asyncio.run(plain.acall(**ask)).usage["calls"] for _ in range(2)] == [1, 1]
    assert plain(**ask).usage["cache_hits"] == 0 and list(empty.iterdir()) == []


def test_module_with_a_cache_and_a_budget_reads_the_cache_on_every_loop(tmp_path):
    """``cache=`` beside other session options: the module's own sessions (one per event loop) share the file."""
    ask = {"question": "10 + 20", "id": "b", "answer": "30"}
    module = NetworkModule(loads_network(NET), cache=tmp_path / "c.sqlite", max_cost=1.0)
    assert asyncio.run(module.acall(**ask)).usage["calls"] == 1
    again = asyncio.run(module.acall(**ask))  # a second loop: before, the first loop's session was reused there
    assert again.usage["calls"] == 0 and again.usage["cache_hits"] == 5
    assert module(**ask).usage["cache_hits"] == 5

