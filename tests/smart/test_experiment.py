"""SMART driven through the executor, the smart router, and the CLI command."""

import json
import subprocess
import sys

import pytest

from llmnet import loads_network
from llmnet.errors import ArtefactError, SpecError
from llmnet.routing import build_router
from llmnet.routing.specs import SmartRouterSpec
from llmnet.smart.experiment import member_network, run_smart, save_smart
from llmnet.tasks.datasets import arithmetic
from llmnet.tasks.query import Query
from tests.conftest import ROOT

MEMBERS = """
models:
  ref: {backend: simulated, model: r, skill: 0.9, price: {input: 30, output: 60}}
  good: {backend: simulated, model: g, skill: 0.88, price: {input: 1, output: 2}}
  bad: {backend: simulated, model: b, skill: 0.2, seed: 9, price: {input: 0.4, output: 0.4}}
task: {prompt: "Q: {question}\\nA:"}
subgraphs:
  voted: {nodes: {g: {kind: generator, model: good, samples: 3}, v: {kind: vote, inputs: [g]}}, output: v}
nodes:
  gen: {kind: generator, model: ref, temperature: 0}
"""


def items(n):
    return [Query(q.id, q.question, q.answer) for q in arithmetic(n, seed=2)]


def test_members_are_models_or_subgraphs():
    net = loads_network(MEMBERS)
    assert member_network(net, "good").spec.nodes["gen"].model == "good"
    assert set(member_network(net, "voted").spec.nodes) == {"g", "v"}
    with pytest.raises(SpecError, match="neither a subgraph nor a model"):
        member_network(net, "nope")


def test_smart_picks_the_good_candidate_and_saves(tmp_path):
    net = loads_network(MEMBERS)
    result, details = run_smart(net, items(400), "ref", ["good", "bad"], delta=0.2, gamma=0.95)
    status = {d.name: d.status.value for d in result.decisions}
    assert status["bad"] == "invalid" and status["good"] == "satisfied"
    assert result.plan.counts == {"good": 400 - result.profiled}
    assert result.realised_agreement >= 0.8 and result.savings > 3 and details["cost_unit"] == "usd"
    paths = save_smart(result, details, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["savings_ratio"] == pytest.approx(result.savings) and "history" in data
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    router = build_router(SmartRouterSpec(kind="smart", path=str(paths["plan"]), branches={"good": "g", "ref": "r"}))
    assert router.choose(items(400)[0], "", ["g", "r"]) == "r"      # profiled items keep the reference
    assert router.choose(items(400)[-1], "", ["g", "r"]) == "g"
    assert router.choose(Query("new", "1 + 1", "2"), "", ["g", "r"]) == "g"  # by the plan's shares


def test_bad_plan_file(tmp_path):
    (tmp_path / "plan.json").write_text('{"format": "llmnet-smart-plan", "version": 99, "shares": {"a": 1}}')
    with pytest.raises(ArtefactError, match="version 99"):
        build_router(SmartRouterSpec(kind="smart", path=str(tmp_path / "plan.json")))


def test_cli_smart(tmp_path):
    (tmp_path / "net.yaml").write_text(MEMBERS)
    cmd = [sys.executable, "-m", "llmnet", "smart", str(tmp_path / "net.yaml"), "--data", "arithmetic:n=200",
           "--reference", "ref", "--candidates", "good,bad", "--accuracy", "0.8", "--bound", "anytime", "--mix",
           "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c.sqlite")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "out" / "smart.json").read_text())
    assert data["bound"] == "anytime" and data["mix"] is True and data["realised_agreement"] is not None
    bad = subprocess.run(cmd[:-2] + ["--no-cache", "--bound", "wrong"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "--bound must be" in bad.stderr and "Traceback" not in bad.stderr


def test_run_smart_takes_custom_backends():
    from llmnet.backends.base import Backend, Completion, Sample

    class Echo(Backend):
        """Answers every question with its first number; counts its calls."""

        calls = 0

        async def complete(self, request):
            Echo.calls += 1
            first = request.query.question.split()[0] if request.query else "0"
            return Completion(tuple(Sample(first, 10, 1) for _ in range(request.n)))

    net = loads_network(MEMBERS)
    backends = {"ref": Echo("ref", net.spec.models["ref"]), "good": Echo("good", net.spec.models["good"])}
    result, _ = run_smart(net, items(200), "ref", ["good", "bad"], delta=0.1, backends=backends)
    status = {d.name: d.status.value for d in result.decisions}
    assert status["good"] == "satisfied" and status["bad"] == "invalid"  # echo agrees with echo always
    assert Echo.calls >= 2 * result.profiled and result.realised_agreement == 1.0
