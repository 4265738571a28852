"""The complexitynet gate router: decision rules, YAML and Python gates, tier-to-branch maps."""

import numpy as np
import pytest

from llmnet import NetworkBuilder, load_network
from llmnet.complexity.classifier import ComplexityClassifier, RouterModel
from llmnet.complexity.router import ComplexityNetRouter, decide
from llmnet.complexity.tiers import load_tiers
from llmnet.execute import run_network
from llmnet.routing import build_router
from llmnet.routing.specs import ComplexityNetRouterSpec
from llmnet.tasks.query import Query

from . import write_tiers

GATED = """\
name: gated-by-complexity
models:
  weak: {{backend: simulated, model: weak, skill: 0.9}}
  strong: {{backend: simulated, model: strong, skill: 0.99}}
task: {{prompt: "Q: {{question}}\\nA:", answer: {{kind: number}}}}
subgraphs:
  cheap: {{nodes: {{g: {{kind: generator, model: weak}}}}}}
  strong: {{nodes: {{g: {{kind: generator, model: strong}}}}}}
nodes:
  route:
    kind: gate
    router: {{kind: complexitynet, path: router.json{extra}}}
    branches: {{cheap: cheap, strong: strong}}
output: route
"""


def train_words(path, tiers=("cheap", "strong")):
    """A router that sends questions about 'easy' things to the first tier, 'hard' ones to the second."""
    texts = [f"easy thing {i}" for i in range(20)] + [f"hard problem {i}" for i in range(20)]
    clf = ComplexityClassifier().fit(texts, [1] * 20 + [2] * 20)
    model = RouterModel.from_classifier(clf, tiers, [1, 10], "calls", {1: 0, 2: 1})
    model.save(path)
    return model


QUERIES = [Query("e1", "easy thing 99", "1"), Query("h1", "hard problem 99", "2"), Query("e2", "an easy thing", "3")]


def branches(report):
    return {r["id"]: r["trace"]["route"]["branch"] for r in report.results}


def test_decision_rules():
    p = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])
    assert decide(p, "predicted").tolist() == [0, 2, 0]  # ties go to the cheaper tier
    assert decide(p, "cost_aware", 0.5).tolist() == [0, 2, 1]
    assert decide(p, "cost_aware", 0.8).tolist() == [1, 2, 1]
    assert decide(p, "cost_aware", 0.81).tolist() == [2, 2, 2]
    assert decide(np.array([0.6, 0.4, 0.0]), "cost_aware", 1.0).tolist() == [1]
    assert decide(np.array([0.9, 0.0, 0.0]), "cost_aware", 1.0).tolist() == [2]  # the top tier always qualifies
    with pytest.raises(ValueError):
        decide(p, "cheapest")


def test_router_in_a_yaml_gate(tmp_path):
    train_words(tmp_path / "router.json")
    path = tmp_path / "gated.yaml"
    path.write_text(GATED.format(extra=""))
    report = run_network(load_network(path), QUERIES)
    assert branches(report) == {"e1": "cheap", "h1": "strong", "e2": "cheap"}
    # cost-aware with a target only the top tier can meet sends everything to it
    path.write_text(GATED.format(extra=", rule: cost_aware, target: 1.0"))
    assert set(branches(run_network(load_network(path), QUERIES)).values()) == {"strong"}


def test_router_via_with_gate_and_tier_map(tmp_path):
    train_words(tmp_path / "router.json", tiers=("low", "high"))
    b = NetworkBuilder("mine", task={"prompt": "Q: {question}\nA:"})
    b.model("weak", backend="simulated", model="weak")
    b.generator("g", model="weak")
    base = b.build()
    fast = NetworkBuilder("fast").model("weak", backend="simulated", model="weak").generator("one", model="weak")
    gated = base.with_gate("route", {"kind": "complexitynet", "path": str(tmp_path / "router.json"),
                                     "tiers": {"low": "fast", "high": "full"}},
                           branches={"fast": fast.build(), "full": base})
    assert branches(run_network(gated, QUERIES)) == {"e1": "fast", "h1": "full", "e2": "fast"}
    # a tier without a branch is reported on the query, naming the fix
    unmapped = base.with_gate("route", {"kind": "complexitynet", "path": str(tmp_path / "router.json")},
                              branches={"fast": fast.build(), "full": base})
    errors = [r["error"] for r in run_network(unmapped, QUERIES).results]
    assert all("map it with router.tiers" in e for e in errors)


def test_router_spec_errors(tmp_path):
    train_words(tmp_path / "router.json")
    spec = ComplexityNetRouterSpec(kind="complexitynet", path="router.json", tiers={"nope": "cheap"})
    with pytest.raises(Exception, match="unknown tier 'nope'"):
        build_router(spec, tmp_path)
    router = build_router(ComplexityNetRouterSpec(kind="complexitynet", path="router.json"), tmp_path)
    assert isinstance(router, ComplexityNetRouter)
    assert router.tiers_for(["easy thing", "hard problem"]) == ["cheap", "strong"]


def test_tiers_gated_network(tmp_path):
    tiers = load_tiers(write_tiers(tmp_path))
    train_words(tmp_path / "router.json", tiers=("one", "top"))
    gated = tiers.gated({"kind": "complexitynet", "path": str(tmp_path / "router.json")})
    assert set(gated.branches["route"]) == {"one", "vote5", "top"}
    report = run_network(gated, [Query("e", "easy thing 1", "2"), Query("h", "hard problem 1", "2")])
    assert branches(report) == {"e": "one", "h": "top"}
