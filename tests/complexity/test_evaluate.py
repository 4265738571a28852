"""The evaluation a reviewer would accept: the pass-count oracle, the majority baseline, random at equal
cost, bootstrap intervals, verdicts, the oracle sanity check, fixed splits, cross-validation and the
per-tier success router."""

import json
import random

import numpy as np
import pytest

from llmnet.complexity import report as report_module
from llmnet.complexity.evaluate import cross_validate, evaluate_router, held_out, read_split, route, train_router
from llmnet.complexity.label import paper_class, read_labels
from llmnet.complexity.report import Routing, build_report, oracle_tiers
from llmnet.complexity.router import ComplexityNetRouter
from llmnet.errors import ArtefactError, LlmnetError

TIERS = ("small", "mid", "big")
COST = {"small": 1e-5, "mid": 2e-4, "big": 3e-3}


def record(i, counts, text, rule="paper"):
    cls = paper_class(*counts) if rule == "paper" else None
    label = TIERS[{1: 0, 2: 0, 3: 1, 4: 1, 5: 2}[cls]] if cls else None
    return {"id": f"t{i}", "question": text, "trials": 5, "counts": dict(zip(TIERS, counts)), "cost": dict(COST),
            "cost_unit": "usd", "rule": rule, "class": cls, "label": label, "unsolved": not any(counts)}


def ladder(n=60, seed=0):
    """Easy tasks the small tier solves, middling ones only the mid tier, hard ones only the big tier."""
    rng = random.Random(seed)
    kinds = [("easy sum of two numbers", (5, 5, 5)), ("parse the nested list of records", (0, 5, 5)),
             ("prove the graph colouring bound", (0, 1, 5))]
    out = []
    for i in range(n):
        text, counts = kinds[i % 3]
        noisy = tuple(max(0, min(5, c + rng.choice((-1, 0, 0, 0)))) for c in counts)
        out.append(record(i, noisy, f"{text} {rng.choice(['now', 'please', 'quickly', 'here'])} {i}"))
    return out


def test_oracle_uses_pass_counts_not_the_paper_label():
    # class 2 (GPT-3.5 needed) is labelled with the cheapest tier under the paper's grouping
    recs = [record(0, (1, 5, 5), "a"), record(1, (5, 5, 5), "b"), record(2, (0, 0, 4), "c"), record(3, (0, 3, 3), "d")]
    assert recs[0]["class"] == 2 and recs[0]["label"] == "small"
    assert oracle_tiers(recs).tolist() == [1, 0, 2, 1]  # ties go to the cheaper tier


def routing_for(recs, router, majority=0):
    n = len(recs)
    return Routing({"router x": np.asarray(router)}, ("router x",), np.full(n, 1), np.full(n, majority))


def test_report_rows_intervals_and_verdicts():
    recs = ladder(60)
    truth = np.array([i % 3 for i in range(60)])
    rep = build_report(recs, routing_for(recs, truth), "usd", "test")
    rows = rep.policies
    assert {"always small", "always big", "majority tier (small)", "router x", "random @ equal cost (x)",
            "oracle", "random @ equal cost (oracle)"} <= set(rows)
    oracle = rows["oracle"]
    assert all(o.accuracy <= oracle.accuracy + 1e-12 for o in rows.values())
    for o in rows.values():
        assert o.accuracy_ci[0] <= o.accuracy <= o.accuracy_ci[1] and o.cost_ci[0] <= o.cost <= o.cost_ci[1]
    assert rows["random @ equal cost (x)"].cost == pytest.approx(rows["router x"].cost)
    assert rows["router x"].verdict.startswith("above the majority baseline")
    assert "above random at equal cost" in rows["router x"].verdict
    # a router that always picks the majority tier is not distinguishable from it
    same = build_report(recs, routing_for(recs, np.zeros(60, dtype=int)), "usd", "test")
    assert same.policies["router x"].verdict.startswith("not distinguishable from the majority baseline")
    # costs keep their significant digits (dollars per task are ~1e-5)
    assert any("cost 1e-05" in line for line in rep.summary_lines())


def test_a_policy_beating_the_oracle_fails_loudly(monkeypatch):
    recs = ladder(30)
    monkeypatch.setattr(report_module, "oracle_tiers", lambda records: np.zeros(len(records), dtype=int))
    with pytest.raises(LlmnetError, match="sanity check failed: policy .* beats the oracle"):
        build_report(recs, routing_for(recs, np.full(30, 2)), "usd", "test")


def test_success_router_meets_its_targets_on_a_ladder(tmp_path):
    recs = ladder(60)
    model = train_router(recs, (0.6, 0.2, 0.2), seed=1)
    assert model.success is not None
    model.save(tmp_path / "r.json")
    test = held_out(recs, model)
    rep = evaluate_router(test, model)
    for name, target in rep.success_targets.items():
        assert rep.policies[name].accuracy >= target - 0.05, (name, rep.policies[name])
    hard = "prove the graph colouring bound again"
    p = model.success_proba([hard, "easy sum of two numbers again"])
    assert p[0, 2] > 0.8 and p[0, 0] < 0.3 and p[1, 0] > 0.5
    router = ComplexityNetRouter(model, "success", 0.5)
    assert router.tiers_for([hard, "easy sum of two numbers again"]) == ["big", "small"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["model"]["success"]["coef"]) == 3


def test_fixed_split_file(tmp_path):
    recs = ladder(30)
    split = {"train": [r["id"] for r in recs[:18]], "validation": [r["id"] for r in recs[18:24]],
             "test": [r["id"] for r in recs[24:]]}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    train, val, test = read_split(path, recs)
    assert [r["id"] for r in test] == split["test"] and len(train) == 18 and len(val) == 6
    model = train_router(recs, split=(train, val, test))
    assert model.meta["split"]["test_ids"] == split["test"] and model.meta["split"]["file"]
    path.write_text(json.dumps({**split, "test": ["nope"]}))
    with pytest.raises(ArtefactError, match="test id 'nope' is not in the labels"):
        read_split(path, recs)
    path.write_text(json.dumps({**split, "test": split["train"][:1]}))
    with pytest.raises(ArtefactError, match="more than one part"):
        read_split(path, recs)


def test_cross_validation_scores_every_task_out_of_fold():
    recs = ladder(30)
    rep = cross_validate(recs, folds=3, repeats=2)
    assert rep.n_test == 30 and rep.evaluation == "3-fold cross-validation x 2 repeats, tfidf"
    assert rep.policies["oracle"].accuracy >= max(o.accuracy for o in rep.policies.values()) - 1e-12
    assert "router cost_aware (target from validation)" in rep.policies
    with pytest.raises(ArtefactError, match="at least 2"):
        cross_validate(recs, folds=1)


def test_route_refuses_other_tiers():
    recs = ladder(30)
    model = train_router(recs)
    other = [{**r, "counts": {"a": 1, "b": 2, "c": 3}} for r in recs]
    with pytest.raises(ArtefactError, match="differ from the router's"):
        route(other, model)


def test_read_labels_names_a_tier_order_difference(tmp_path):
    recs = ladder(2)
    recs[1]["cost"] = {"mid": 1, "small": 2, "big": 3}
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(ArtefactError, match=r"labels.jsonl:2: 'cost' lists the tiers in another order"):
        read_labels(path)


def test_a_verdict_never_prints_a_nonzero_bound_as_zero():
    from llmnet.complexity.report import _signed

    assert _signed(0.0063) == "+0.006" and _signed(-0.2) == "-0.200" and _signed(0.0) == "+0.000"
    assert _signed(1.2e-5) == "+1.2e-05" and _signed(-3e-4) == "-3.0e-04"
