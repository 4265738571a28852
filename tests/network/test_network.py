"""Example graphs, the Python API, round trips and gates embedded in user graphs."""

import pytest

from llmnet import NetworkBuilder, SpecError, load_network, loads_network
from llmnet.network.spec import SubgraphSpec
from llmnet.routing import RuleRouter, build_router
from llmnet.tasks.query import Query
from tests.conftest import GRAPHS

EXAMPLES = sorted(GRAPHS.glob("*.yaml"))
FEW_SHOT = "Question: 2 + 3\nAnswer: 5\nQuestion: 14 + 7\nAnswer: 21\nQuestion: {question}\nAnswer:"


def test_required_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"single.yaml", "vote.yaml", "filter_vote.yaml", "llm_select.yaml", "gated.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_and_round_trips(path):
    net = load_network(path)
    assert net.output in net.spec.nodes
    again = loads_network(net.to_yaml())
    assert again == net
    assert list(again.order) == list(net.order)


def gated_in_python():
    b = NetworkBuilder("gated", task={"prompt": FEW_SHOT, "answer": {"kind": "number"}})
    b.model("smol", backend="local", model="smollm2-135m")
    b.subgraph("cheap", nodes={"one": b.node("generator", model="smol", temperature=0, max_tokens=8,
                                             stop=["\n"])}, output="one")
    b.subgraph("voted", nodes={"gen": b.node("generator", model="smol", samples=5, temperature=0.7, max_tokens=8,
                                             stop=["\n"]),
                               "vote": b.node("vote", inputs=["gen"])}, output="vote")
    b.gate("route", router={"kind": "rule", "rules": [{"field": "question_length", "op": "gt", "value": 8,
                                                         "branch": "strong"}], "default": "cheap"},
           branches={"cheap": "cheap", "strong": "voted"})
    b.output("route")
    return b.build()


def test_python_built_gated_equals_yaml():
    from_yaml = load_network(GRAPHS / "gated.yaml")
    built = gated_in_python()
    # descriptions are comments in the YAML; compare the graph structure and every node
    assert built.spec.nodes == from_yaml.spec.nodes
    assert built.spec.models == from_yaml.spec.models and built.spec.task == from_yaml.spec.task
    for branch in ("cheap", "strong"):
        a, b = built.branches["route"][branch], from_yaml.branches["route"][branch]
        assert a.spec.nodes == b.spec.nodes and a.output == b.output
        assert sorted(a.graph.edges) == sorted(b.graph.edges)
    assert loads_network(built.to_yaml()) == built


def test_builder_reports_bad_nodes_with_paths():
    b = NetworkBuilder("x")
    with pytest.raises(SpecError) as info:
        b.add("gen", "generator", model="m", sampels=3)
    assert "nodes.gen.sampels: unknown key 'sampels'" in str(info.value)
    b.model("m", backend="simulated", model="s").add("gen", "generator", model="m").vote("v", inputs=["gen2"])
    with pytest.raises(SpecError) as info:
        b.output("v").build()
    assert "nodes.v.inputs[0]: unknown node 'gen2'" in str(info.value)


def test_with_gate_embeds_a_router_in_a_user_graph():
    mine = load_network(GRAPHS / "vote.yaml")
    cheap = load_network(GRAPHS / "single.yaml")
    router = {"kind": "rule", "rules": [{"field": "difficulty", "op": "ge", "value": 2, "branch": "full"}],
              "default": "cheap"}
    gated = mine.with_gate("route", router, {"full": mine, "cheap": cheap})
    assert gated.output == "route" and set(gated.branches["route"]) == {"full", "cheap"}
    assert gated.branches["route"]["full"].spec.nodes == mine.spec.nodes
    assert loads_network(gated.to_yaml()) == gated
    extra = SubgraphSpec(nodes={"g": {"kind": "generator", "model": "smol"}})
    assert set(mine.with_gate("r", router, {"full": mine, "cheap": extra}).branches["r"]) == {"full", "cheap"}


def test_rule_router_chooses():
    net = load_network(GRAPHS / "gated.yaml")
    router = build_router(net.spec.nodes["route"].router)
    assert isinstance(router, RuleRouter)
    assert router.choose(Query("1", "1 + 2"), "p", ["cheap", "strong"]) == "cheap"
    assert router.choose(Query("2", "123 + 456"), "p", ["cheap", "strong"]) == "strong"


def test_walk_names_branch_nodes():
    names = [n for n, _ in load_network(GRAPHS / "gated.yaml").walk()]
    assert names == ["route", "route/cheap/one", "route/strong/gen", "route/strong/vote"]
