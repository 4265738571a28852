"""Node kinds and routers of your own, from Python, used from YAML."""

import pytest
from pydantic import Field

import llmnet
from llmnet import AsyncRouter, CustomCallNode, CustomNode, Query, loads_network, register_node, run_network
from llmnet.errors import GraphError, SpecError
from llmnet.execute import RunConfig
from llmnet.routing import register_router


class Longest(CustomNode):
    """Keeps the candidates whose answer has the most digits."""

    inputs: list[str] = Field(min_length=1)
    at_least: int = Field(1, ge=1)


async def run_longest(ctx, name, spec, inputs):
    cands = [c for group in inputs for c in group if c.answer is not None]
    best = max((len(c.answer) for c in cands), default=0)
    kept = [c for c in cands if len(c.answer) == best and best >= spec.at_least]
    ctx.note(name, kept=len(kept))
    return kept


class Echo(CustomCallNode):
    inputs: list[str] = Field(default_factory=list)


async def run_echo(ctx, name, spec, inputs):
    (text,) = await ctx.sample(name, spec, f"echo {ctx.query.question}", 1)
    return llmnet.Answer(ctx.extract(text), text)


register_node("longest", run_longest, Longest, produces="candidates")
register_node("echo_call", run_echo, Echo)

NET = """
name: custom
models: {sim: {backend: simulated, model: s, skill: 0.9}}
nodes:
  gen: {kind: generator, model: sim, samples: 5}
  pick: {kind: longest, inputs: [gen], at_least: 1}
  vote: {kind: vote, inputs: [pick]}
output: vote
"""


def test_a_registered_kind_runs_from_yaml_and_feeds_a_vote():
    net = loads_network(NET)
    qs = [Query(str(i), f"{i} + 5", str(i + 5)) for i in range(30)]
    rep = run_network(net, qs, RunConfig(progress=False))
    assert rep.summary["errors"] == 0
    assert all("kept" in r["trace"]["pick"] for r in rep.results)
    assert rep.summary["accuracy"] > 0.5  # skill 0.9: the vote over kept candidates is mostly right


def test_a_registered_kind_that_calls_a_model_is_counted_and_round_trips():
    net = loads_network("""
name: e
models: {sim: {backend: simulated, model: s, skill: 1.0}}
nodes:
  e: {kind: echo_call, model: sim, temperature: 0}
""")
    rep = run_network(net, [Query("a", "1 + 1", "2")], RunConfig(progress=False))
    assert rep.results[0]["answer"] == "2" and rep.summary["per_node"]["e"]["calls"] == 1
    assert loads_network(net.to_yaml()) == net


@pytest.mark.parametrize("mutation, where", [
    ("at_least: 1", "at_least: 0"),       # the spec model's own constraint
    ("at_least: 1", "at_leest: 1"),       # unknown key
    ("inputs: [gen]", "inputs: [gne]"),   # unknown input: a graph check, as for built-ins
])
def test_registered_kinds_are_validated_like_built_ins(mutation, where):
    with pytest.raises(SpecError) as exc:
        loads_network(NET.replace(mutation, where))
    text = " ".join(p.format() for p in exc.value.problems)
    assert "nodes.pick" in text


def test_unknown_model_in_a_registered_call_node_is_reported():
    with pytest.raises(GraphError) as exc:
        loads_network("name: e\nmodels: {sim: {backend: simulated, model: s}}\nnodes:\n  e: {kind: echo_call, model: sin}\n")
    assert "unknown model 'sin'" in str(exc.value)


def test_register_node_refuses_built_ins_and_sync_functions():
    with pytest.raises(ValueError):
        register_node("vote", run_longest, Longest)
    with pytest.raises(TypeError):
        register_node("sync_kind", lambda ctx, name, spec, inputs: None, Longest)


def test_the_builder_knows_registered_kinds():
    b = llmnet.NetworkBuilder("b")
    b.model("sim", backend="simulated", model="s")
    b.generator("gen", model="sim", samples=3).add("pick", "longest", inputs=["gen"]).vote("vote", inputs=["pick"])
    assert b.build().output == "vote"


# ----------------------------------------------------------------------------- async routers


class AskTheModel(AsyncRouter):
    """An LLM classifier: asks a model whether the question is hard."""

    def __init__(self, model):
        self.model = model

    async def achoose(self, query, prompt, branches, models):
        (reply,) = await models.complete(self.model, f"hard? {query.question}", max_tokens=4)
        return "strong" if int(reply.strip()) % 2 else "cheap"


register_router("ask_model", lambda spec, base: AskTheModel(spec.options["model"]))

GATED = """
name: gated
models:
  judge: {backend: simulated, model: j, skill: 0.5, price: {input: 1, output: 1}}
  sim: {backend: simulated, model: s}
subgraphs:
  cheap: {nodes: {one: {kind: generator, model: sim}}}
  strong:
    nodes:
      gen: {kind: generator, model: sim, samples: 5}
      vote: {kind: vote, inputs: [gen]}
    output: vote
nodes:
  route:
    kind: gate
    router: {kind: ask_model, branches: [cheap, strong], options: {model: judge}}
    branches: {cheap: cheap, strong: strong}
"""


def test_an_async_router_calls_a_model_through_the_executor(tmp_path):
    net = loads_network(GATED)
    qs = [Query(str(i), f"{i} + 1", str(i + 1)) for i in range(40)]
    config = RunConfig(progress=False, cache_path=tmp_path / "c.sqlite")
    rep = run_network(net, qs, config)
    assert rep.summary["errors"] == 0
    branches = rep.summary["branches"]["route"]
    assert set(branches) == {"cheap", "strong"} and sum(branches.values()) == 40
    route = rep.summary["per_node"]["route"]
    assert route["calls"] == 40 and route["cost_usd"] > 0  # counted and priced under the gate
    assert rep.summary["per_model"]["judge"]["calls"] == 40
    again = run_network(net, qs, config)  # cached: the router's calls are not paid twice
    assert again.summary["per_node"]["route"]["cache_hits"] == 40 and again.summary["per_node"]["route"]["calls"] == 0
    assert again.summary["branches"] == rep.summary["branches"]


def test_unregistered_router_kind_and_undeclared_branch_are_reported():
    with pytest.raises(GraphError) as exc:
        loads_network(GATED.replace("kind: ask_model", "kind: ask_modle"))
    assert "router kind 'ask_modle' is not registered" in str(exc.value)
    with pytest.raises(GraphError) as exc:
        loads_network(GATED.replace("branches: [cheap, strong]", "branches: [cheap, strnog]"))
    assert "strnog" in str(exc.value)
