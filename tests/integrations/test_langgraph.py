"""A real LangGraph graph routed by llmnet's trained ComplexityNet router, with networks as nodes."""

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest

pytest.importorskip("langgraph", reason="needs the [langgraph] extra: pip install -e '.[langgraph]'")

from langgraph.graph import END, START, StateGraph  # noqa: E402

from llmnet import loads_network  # noqa: E402
from llmnet.integrations.langgraph import load_router, network_node, router_edge  # noqa: E402
from llmnet.tasks.datasets import arithmetic  # noqa: E402
from tests.conftest import GRAPHS  # noqa: E402

# the shipped router with the rule and target complexity_gated.yaml uses
ROUTER = {"kind": "complexitynet", "path": "routers/arithmetic_router.json", "rule": "cost_aware", "target": 0.6}
TIERS = ["single", "vote3", "mixed"]


def tier(name: str, k: int):
    return loads_network(f"""
name: {name}
models: {{sim: {{backend: simulated, model: s, skill: 0.7}}}}
nodes:
  gen: {{kind: generator, model: sim, samples: {k}}}
  vote: {{kind: vote, inputs: [gen]}}
output: vote
""")


class State(TypedDict, total=False):
    question: str
    id: str
    answer: str
    llmnet: dict
    visited: Annotated[list, operator.add]


def build():
    g = StateGraph(State)
    for name, k in zip(TIERS, (1, 3, 5)):
        g.add_node(name, network_node(tier(name, k)))
        g.add_edge(name, END)
    g.add_conditional_edges(START, router_edge(ROUTER, TIERS, base=GRAPHS), {t: t for t in TIERS})
    return g.compile()


def test_a_langgraph_graph_routes_with_the_shipped_complexitynet_router():
    graph = build()
    router = load_router(ROUTER, GRAPHS)
    queries = arithmetic(40, digits=(1, 3), seed=3)
    routes = []
    for q in queries:
        out = graph.invoke({"question": q.question, "id": q.id, "answer": q.answer})
        expected = router.choose(q, q.question, TIERS)
        assert out["llmnet"]["network"] == expected  # the node the router picked ran
        assert out["llmnet"]["calls"] == 1 and out["answer"] is not None
        routes.append(expected)
    assert len(set(routes)) >= 2, routes  # the trained router really discriminates among these questions


def test_the_graph_runs_async_with_one_engine_per_node():
    graph = build()
    queries = arithmetic(12, digits=(1, 2), seed=5)

    async def main():
        return await asyncio.gather(*(graph.ainvoke({"question": q.question, "id": q.id, "answer": q.answer})
                                      for q in queries))

    outs = asyncio.run(main())
    assert all(o["answer"] is not None for o in outs)
    sync = [build().invoke({"question": q.question, "id": q.id, "answer": q.answer}) for q in queries]
    assert [o["answer"] for o in outs] == [o["answer"] for o in sync]  # same seeds, same answers


def test_a_rule_router_edge_reads_state_fields():
    edge = router_edge({"kind": "rule", "rules": [{"field": "lane", "op": "eq", "value": "fast", "branch": "a"}],
                        "default": "b"}, ["a", "b"])
    assert edge({"question": "x", "lane": "fast"}) == "a" and edge({"question": "x"}) == "b"
    with pytest.raises(KeyError):
        edge({"lane": "fast"})


def test_a_smart_plan_routes_a_langgraph_graph(tmp_path):
    import json

    (tmp_path / "plan.json").write_text(json.dumps({"format": "llmnet-smart-plan", "version": 1,
                                                    "shares": {"small": 0.5, "gpt4": 0.5},
                                                    "assignment": {"pinned": "gpt4"}}))
    spec = {"kind": "smart", "path": "plan.json", "branches": {"small": "single", "gpt4": "mixed"}}
    g = StateGraph(State)
    for name, k in (("single", 1), ("mixed", 5)):
        g.add_node(name, network_node(tier(name, k)))
        g.add_edge(name, END)
    g.add_conditional_edges(START, router_edge(spec, ["single", "mixed"], base=tmp_path),
                            {"single": "single", "mixed": "mixed"})
    graph = g.compile()
    assert graph.invoke({"question": "1 + 1", "id": "pinned", "answer": "2"})["llmnet"]["network"] == "mixed"
    ran = [graph.invoke({"question": f"{i} + 1", "id": f"q{i}", "answer": str(i + 1)})["llmnet"]["network"]
           for i in range(40)]
    assert 10 <= ran.count("single") <= 30  # the plan's 50/50 shares, drawn by a hash of the id



def one_node_graph(net, **options):
    g = StateGraph(State)
    g.add_node("net", network_node(net, **options))
    g.add_edge(START, "net")
    g.add_edge("net", END)
    return g.compile()


ASK = {"question": "12 + 35", "id": "q1", "answer": "47"}


def test_a_network_node_with_a_cache_pays_once_and_without_one_pays_every_time(tmp_path, monkeypatch):
    """``cache=`` means what it means for ``network.invoke``: a path (or a SampleCache) answers the same
    question again from the cache; the default, no cache, pays again and writes no file."""
    import sqlite3

    from llmnet.execute.cache import SampleCache

    cached = one_node_graph(tier("vote3", 3), cache=tmp_path / "c.sqlite")
    first, again = cached.invoke(ASK)["llmnet"], cached.invoke(ASK)["llmnet"]
    assert first["calls"] == 1 and first["cache_hits"] == 0
    assert again["calls"] == 0 and again["cache_hits"] == 3  # answered from the cache
    assert again["branch"] == first["branch"] and cached.invoke(ASK)["answer"] == "47"
    # async, a new event loop each time, and another node on the same file: still answered from it
    assert asyncio.run(cached.ainvoke(ASK))["llmnet"] == again
    assert asyncio.run(cached.ainvoke(ASK))["llmnet"] == again
    assert asyncio.run(one_node_graph(tier("vote3", 3), cache=tmp_path / "c.sqlite").ainvoke(ASK))["llmnet"] == again
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 3
    # a SampleCache object works the same way, async first; its owner keeps it open
    store = SampleCache(tmp_path / "o.sqlite")
    try:
        mine = one_node_graph(tier("vote3", 3), cache=store)
        assert asyncio.run(mine.ainvoke(ASK))["llmnet"]["calls"] == 1
        assert asyncio.run(mine.ainvoke(ASK))["llmnet"]["cache_hits"] == 3
        assert mine.invoke(ASK)["llmnet"]["calls"] == 0 and len(store) == 3
    finally:
        store.close()
    # the default, no cache: every invocation pays, sync and async, and no file is written
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    plain = one_node_graph(tier("vote3", 3))
    assert [plain.invoke(ASK)["llmnet"]["calls"] for _ in range(2)] == [1, 1]
    assert [asyncio.run(plain.ainvoke(ASK))["llmnet"]["calls"] for _ in range(2)] == [1, 1]
    assert plain.invoke(ASK)["llmnet"]["cache_hits"] == 0
    assert list(empty.iterdir()) == []


def test_a_network_node_with_session_options_keeps_its_cache(tmp_path):
    """``cache=`` beside other session options (a budget): the node's own session reads and writes it."""
    graph = one_node_graph(tier("vote3", 3), cache=tmp_path / "c.sqlite", max_cost=10.0)
    assert graph.invoke(ASK)["llmnet"]["calls"] == 1
    assert graph.invoke(ASK)["llmnet"] == {**graph.invoke(ASK)["llmnet"], "calls": 0, "cache_hits": 3}
    assert asyncio.run(graph.ainvoke(ASK))["llmnet"]["calls"] == 0
    assert asyncio.run(graph.ainvoke(ASK))["llmnet"]["cache_hits"] == 3  # a second loop: a fresh session, same file


EXITING = """
import json, sys
from typing import TypedDict
from langgraph.graph import END, START, StateGraph
from llmnet import loads_network
from llmnet.integrations.langgraph import network_node

class State(TypedDict, total=False):
    question: str
    id: str
    llmnet: dict

g = StateGraph(State)
g.add_node("net", network_node(loads_network(sys.argv[2]), cache=sys.argv[1]))
g.add_edge(START, "net")
g.add_edge("net", END)
graph = g.compile()
print(json.dumps([graph.invoke({"question": "1 + 2", "id": "a"})["llmnet"]["calls"] for _ in range(2)]))
"""


def test_a_process_with_a_cached_node_exits_cleanly(tmp_path):
    """A script whose graph (and network) live until exit: its samples are in the cache and exit prints
    nothing. Closing the network's cached session at exit raised in the cache writer, whose thread pool
    is shut down by then (a race, so the script runs a few times)."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    spec = "name: t\nmodels: {sim: {backend: simulated, model: s}}\nnodes: {gen: {kind: generator, model: sim, samples: 3}}\n"
    cache = tmp_path / "c.sqlite"
    for expected in ([1, 0], [0, 0], [0, 0]):  # later processes read what the first committed
        done = subprocess.run([sys.executable, "-c", EXITING, str(cache), spec], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert json.loads(done.stdout) == expected
