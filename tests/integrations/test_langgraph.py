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
