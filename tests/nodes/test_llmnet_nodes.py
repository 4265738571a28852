"""Generators with inputs, refine chains, fusers, rankers and knockout tournaments."""

import math

import pytest

from llmnet import Query, load_network, loads_network, run_network
from llmnet.backends.base import Backend, Completion, Sample
from llmnet.errors import GraphError
from llmnet.network.spec import SimulatedModel
from llmnet.execute import RunConfig
from llmnet.nodes.rank import ranking
from llmnet.nodes.tournament import winner
from tests.conftest import GRAPHS, needs_local

HEAD = """
name: t
models: {m: {backend: simulated, model: s}}
task: {prompt: "Q: {question}\\nA:"}
"""


class Scripted(Backend):
    """Replies by a Python function of the prompt; records every prompt it saw."""

    def __init__(self, reply):
        super().__init__("m", SimulatedModel(backend="simulated", model="scripted"))
        self.reply, self.prompts = reply, []

    @property
    def identity(self) -> str:
        return "scripted"

    async def complete(self, request):
        self.prompts.append(request.prompt)
        return Completion(tuple(Sample(self.reply(request.prompt, request.seed + j), 1, 1) for j in range(request.n)))


def run(text, reply, question="2 + 2", answer="4"):
    backend = Scripted(reply)
    rep = run_network(loads_network(HEAD + text), [Query("q", question, answer)],
                      RunConfig(progress=False, backends={"m": backend}))
    (rec,) = rep.results
    assert rec["error"] is None, rec["error"]
    return rec, backend.prompts


# ----------------------------------------------------------------------------- validation


def problems(text):
    with pytest.raises(GraphError) as exc:
        loads_network(HEAD + text)
    return [p.format() for p in exc.value.problems]


def test_candidates_without_inputs_is_rejected_at_the_prompt():
    (msg,) = problems("""
nodes:
  gen: {kind: generator, model: m, prompt: "Fix {candidates}"}
""")
    assert "nodes.gen.prompt" in msg and "{candidates}" in msg and "no inputs" in msg


def test_previous_without_inputs_is_rejected():
    (msg,) = problems("""
nodes:
  gen: {kind: generator, model: m, prompt: "Was {previous} right?"}
""")
    assert "nodes.gen.prompt" in msg and "{previous}" in msg


@pytest.mark.parametrize("prompt", [None, "Q: {question}"])
def test_inputs_the_prompt_never_reads_are_rejected(prompt):
    extra = "" if prompt is None else f', prompt: "{prompt}"'
    (msg,) = problems(f"""
nodes:
  gen: {{kind: generator, model: m, samples: 3}}
  fuse: {{kind: generator, model: m, inputs: [gen]{extra}}}
""")
    assert "nodes.fuse.inputs" in msg and "{candidates}" in msg


def test_refine_without_inputs_and_unknown_input_are_reported():
    msgs = problems("""
nodes:
  gen: {kind: generator, model: m}
  ref: {kind: refine, inputs: [gne], model: m, prompt: "{previous}"}
""")
    assert any("nodes.ref.inputs[0]" in m and "unknown node 'gne'" in m for m in msgs)


def test_rank_and_tournament_need_candidates_upstream():
    msgs = problems("""
nodes:
  gen: {kind: generator, model: m, samples: 2}
  vote: {kind: vote, inputs: [gen]}
  knock: {kind: tournament, inputs: [vote], model: m}
""")
    assert any("nodes.knock.inputs[0]" in m and "single answer" in m for m in msgs)


def test_a_generator_may_read_a_single_answer():
    net = loads_network(HEAD + """
nodes:
  gen: {kind: generator, model: m, samples: 3}
  vote: {kind: vote, inputs: [gen]}
  check: {kind: generator, model: m, inputs: [vote], prompt: "{question} was {previous}?"}
""")
    assert net.output == "check"


@pytest.mark.parametrize("name", ["refine_chain", "fuse", "tournament"])
def test_shipped_graphs_validate(name):
    net = load_network(GRAPHS / f"{name}.yaml")
    assert net.output


# ----------------------------------------------------------------------------- behaviour


def test_fuser_sees_numbered_candidates_and_answers_anew():
    def reply(prompt, seed):
        if prompt.startswith("Fuse"):
            return " 4"
        return [" 3", " 5", " 3"][seed]

    rec, prompts = run("""
nodes:
  gen: {kind: generator, model: m, samples: 3}
  fuse: {kind: generator, model: m, inputs: [gen], temperature: 0, prompt: "Fuse {question}:\\n{candidates}\\nA:"}
""", reply)
    assert "Fuse 2 + 2:\n1. 3\n2. 5\n3. 3\nA:" in prompts
    assert rec["answer"] == "4" and rec["correct"] is True  # not among the candidates: a new answer
    assert rec["calls"] == 4


def test_refine_chain_reads_the_previous_round_each_time():
    def reply(prompt, seed):
        if "prev" in prompt:
            return f" {int(prompt.rsplit('prev ', 1)[1]) + 1}"
        return " 0"

    rec, prompts = run("""
nodes:
  gen: {kind: generator, model: m}
  ref: {kind: refine, inputs: [gen], rounds: 3, model: m, prompt: "{question} prev {previous}"}
""", reply)
    assert [p for p in prompts if "prev" in p] == ["2 + 2 prev 0", "2 + 2 prev 1", "2 + 2 prev 2"]
    assert rec["answer"] == "3"
    assert rec["trace"]["ref"]["rounds"] == [["1"], ["2"], ["3"]]


def test_refine_rounds_zero_passes_the_inputs_through():
    rec, prompts = run("""
nodes:
  gen: {kind: generator, model: m}
  ref: {kind: refine, inputs: [gen], rounds: 0, model: m, prompt: "{previous}"}
""", lambda p, s: " 7")
    assert rec["answer"] == "7" and len(prompts) == 1


def test_previous_is_the_plurality_of_the_inputs():
    seen = []

    def reply(prompt, seed):
        if prompt.startswith("was"):
            seen.append(prompt)
            return " 1"
        return [" 4", " 9", " 4", " 9", " 4"][seed]

    run("""
nodes:
  gen: {kind: generator, model: m, samples: 5}
  ref: {kind: generator, model: m, inputs: [gen], prompt: "was {previous}"}
""", reply)
    assert seen == ["was 4"]


def test_ranking_parses_orders_and_fills_in():
    assert ranking("3 > 1", 4) == [2, 0, 1, 3]
    assert ranking("9, 2, 2, x", 3) == [1, 0, 2]
    assert ranking("", 2) == [0, 1]


def test_rank_keeps_the_top_n_in_the_models_order():
    def reply(prompt, seed):
        if "Rank" in prompt:
            return " 3 > 1 > 2"
        return [" 10", " 11", " 4"][seed]

    rec, _ = run("""
nodes:
  gen: {kind: generator, model: m, samples: 3}
  rank: {kind: rank, inputs: [gen], model: m, keep: 2, prompt: "Rank {candidates}"}
  vote: {kind: vote, inputs: [rank]}
""", reply)
    assert rec["trace"]["rank"]["answers"] == ["4", "10"]
    assert rec["trace"]["rank"]["order"] == [3, 1, 2]


def test_winner_reads_the_first_one_or_two():
    assert winner(" 2") == 1 and winner("1 or 2") == 0 and winner("none") == 0


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_tournament_makes_k_minus_1_calls_in_log2_k_rounds_and_the_best_wins(k):
    # candidate j answers j; every match prefers the larger number, so k - 1 must win
    def reply(prompt, seed):
        if prompt.startswith("Match"):
            a, b = (int(line.split(". ")[1]) for line in prompt.splitlines()[1:3])
            return " 1" if a > b else " 2"
        return f" {seed}"

    rec, prompts = run(f"""
nodes:
  gen: {{kind: generator, model: m, samples: {k}}}
  knock: {{kind: tournament, inputs: [gen], model: m, prompt: "Match\\n{{candidates}}"}}
""", reply, answer=str(k - 1))
    matches = [p for p in prompts if p.startswith("Match")]
    assert len(matches) == k - 1
    assert len(rec["trace"]["knock"]["rounds"]) == (math.ceil(math.log2(k)) if k > 1 else 0)
    assert rec["answer"] == str(k - 1) and rec["correct"] is True


def test_tournament_on_the_simulated_backend_counts_its_calls():
    net = loads_network(HEAD + """
nodes:
  gen: {kind: generator, model: m, samples: 4}
  knock: {kind: tournament, inputs: [gen], model: m}
""")
    rep = run_network(net, [Query(str(i), f"{i} + 1", str(i + 1)) for i in range(20)], RunConfig(progress=False))
    assert rep.summary["errors"] == 0
    assert rep.summary["per_node"]["knock"]["samples"] == 20 * 3


# ----------------------------------------------------------------------------- the bundled model


@needs_local
@pytest.mark.slow
@pytest.mark.parametrize("name, node", [("refine_chain", "refine"), ("fuse", "fuse"), ("tournament", "knockout")])
def test_shipped_graphs_run_on_the_bundled_model(name, node):
    net = load_network(GRAPHS / f"{name}.yaml", {"L": 1} if name == "refine_chain" else {"K": 2, "N": 2}
                       if name == "fuse" else {"K": 2})
    qs = [Query("a", "3 + 4", "7"), Query("b", "12 + 5", "17")]
    rep = run_network(net, qs, RunConfig(progress=False))
    assert rep.summary["errors"] == 0
    for rec in rep.results:
        assert rec["answer"] is not None and rec["answer"].lstrip("-").isdigit()  # parseable, not necessarily right
        assert node in rec["trace"]


@pytest.mark.parametrize("name", ["refine_chain", "fuse", "tournament"])
def test_shipped_graphs_draw(name, tmp_path):
    from llmnet.network.draw import draw_png, mermaid

    net = load_network(GRAPHS / f"{name}.yaml")
    text = mermaid(net)
    assert all(node in text for node in net.nodes)
    draw_png(net, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_candidates_and_answers_are_frozen_values_made_by_keyword_or_position():
    """Candidate and Answer set their fields themselves (a faster __init__): still frozen dataclasses,
    equal and hashed by their fields, with their defaults, keywords and ``dataclasses.replace``."""
    import dataclasses

    from llmnet.nodes.base import Answer, Candidate

    c = Candidate("t", "1")
    assert (c.text, c.answer, c.weight, c.source) == ("t", "1", 1.0, "")
    assert c == Candidate(text="t", answer="1", weight=1.0, source="") and hash(c) == hash(Candidate("t", "1"))
    assert dataclasses.replace(c, weight=0.5) == Candidate("t", "1", 0.5) != c
    assert dataclasses.asdict(Candidate("t", None, 2.0, "gen")) == {"text": "t", "answer": None, "weight": 2.0,
                                                                    "source": "gen"}
    a = Answer("42")
    assert (a.answer, a.text) == ("42", None) and a == Answer(answer="42", text=None) and {a, Answer("42")} == {a}
    for obj, field in ((c, "text"), (a, "answer")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, "x")
    with pytest.raises(TypeError):
        Candidate("t")  # answer is required
