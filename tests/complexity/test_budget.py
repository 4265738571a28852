"""The budget rule (beyond the paper): argmax_t p_t(x) - lambda c_t, lambda bisected to meet a mean cost."""

import random

import numpy as np
import pytest

from llmnet.complexity.evaluate import cross_validate, evaluate_router, route, train_router
from llmnet.complexity.label import paper_class
from llmnet.complexity.router import decide, decide_budget, fit_lambda
from llmnet.errors import ArtefactError

TIERS = ("small", "mid", "big")
COST = {"small": 1.0, "mid": 3.0, "big": 5.0}


def test_budget_beats_the_threshold_rule_at_equal_cost():
    # kind A: extra calls buy little (0.05 -> 0.15); kind B: they buy a lot (0.60 -> 0.95)
    p = np.array([[0.05, 0.15], [0.60, 0.95]] * 50)
    costs = np.array([1.0, 3.0])
    rows = np.arange(len(p))
    threshold = decide(p, "success", 0.3)       # A clears nothing -> its best tier; B clears 0.3 at once
    assert threshold.tolist() == [1, 0] * 50
    spent = costs[threshold].mean()
    lam, realised = fit_lambda(p, costs, spent)
    budget = decide_budget(p, costs, lam)
    assert budget.tolist() == [0, 1] * 50        # the calls go where they gain most
    assert realised == costs[budget].mean() == spent == 2.0
    assert p[rows, budget].mean() == pytest.approx(0.5)
    assert p[rows, threshold].mean() == pytest.approx(0.375)


def test_ties_go_to_the_cheaper_tier():
    p = np.array([[0.2, 0.4, 0.4]])
    assert decide_budget(p, [1, 2, 3], 0.0).tolist() == [1]
    assert decide_budget(p, [1, 2, 3], 0.2).tolist() == [0]  # 0.2 - 0.2 == 0.4 - 0.4: the cheaper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bisection_meets_the_budget_tightly(seed):
    rng = np.random.default_rng(seed)
    p = np.sort(rng.uniform(0, 1, size=(200, 3)), axis=1)  # stronger tiers do better, by varying gains
    costs = np.array([1.0, 3.0, 5.0])
    for budget in (1.0, 1.5, 2.2, 3.0, 3.7, 4.5, 5.0):
        lam, realised = fit_lambda(p, costs, budget)
        tiers = decide_budget(p, costs, lam)
        assert realised == pytest.approx(costs[tiers].mean())
        assert realised <= budget + 1e-9
        if lam > 0:  # a little less lambda overspends: the budget is met as tightly as the steps allow
            assert costs[decide_budget(p, costs, lam * (1 - 1e-6))].mean() > budget
    lam, realised = fit_lambda(p, costs, 0.5)    # below the cheapest tier: everything cheapest
    assert realised == 1.0
    assert fit_lambda(p, costs, 100.0)[0] == 0.0  # unconstrained: the most likely to succeed
    with pytest.raises(ArtefactError, match="increasing"):
        fit_lambda(p, [3.0, 1.0, 5.0], 2.0)


def record(i, counts, text):
    cls = paper_class(*counts)
    return {"id": f"t{i}", "question": text, "trials": 5, "counts": dict(zip(TIERS, counts)), "cost": dict(COST),
            "cost_unit": "calls", "rule": "paper", "class": cls, "label": TIERS[{1: 0, 2: 0, 3: 1, 4: 1, 5: 2}[cls]],
            "unsolved": not any(counts)}


def gains_ladder(n=120, seed=0):
    """Hard tasks where the top tier buys little (0, 0, 1 of 5); tasks where it buys a lot (1, 3, 5 of 5)."""
    rng = random.Random(seed)
    kinds = [("prove the graph colouring bound", (0, 0, 1)), ("add these two numbers", (1, 3, 5))]
    return [record(i, kinds[i % 2][1], f"{kinds[i % 2][0]} {rng.choice(['now', 'please', 'here'])} {i}")
            for i in range(n)]


def test_budget_rows_in_the_held_out_report():
    recs = gains_ladder()
    model = train_router(recs, seed=0)
    assert len(model.meta["budget_calibration"]) == model.meta["trained_on"]
    held = [r for r in recs if str(r["id"]) in set(model.meta["split"]["test_ids"])]
    rep = evaluate_router(held, model, success_targets=(0.3,), budgets=(2.0,))
    rows = rep.policies
    success, budget = rows["router success@0.3"], rows["router budget=success@0.3"]
    assert budget.cost <= success.cost + 0.5          # about equal cost (lambda fitted on training tasks)
    assert budget.accuracy > success.accuracy + 0.05  # 0.6 vs 0.4 expected on this ladder
    assert "random @ equal cost (budget=success@0.3)" in rows
    assert "random at equal cost" in budget.verdict and "majority baseline" in budget.verdict
    assert budget.accuracy_ci[0] <= budget.accuracy <= budget.accuracy_ci[1]
    # the budget is met on the tasks lambda was fitted on; held-out tasks' mix may spend more or less
    lam, spent = fit_lambda(np.asarray(model.meta["budget_calibration"]), model.costs, 2.0)
    assert spent <= 2.0 and lam > 0
    p_held = model.success_proba([r["question"] for r in held])
    assert np.array_equal(route(held, model, budgets=(2.0,)).policies["router budget@2"],
                          decide_budget(p_held, model.costs, lam))


def test_budget_rows_in_cross_validation():
    rep = cross_validate(gains_ladder(), folds=3, success_targets=(0.3, 0.5))
    for t in ("0.3", "0.5"):
        assert f"router budget=success@{t}" in rep.policies
        assert f"random @ equal cost (budget=success@{t})" in rep.policies
    assert rep.policies["router budget=success@0.3"].accuracy > rep.policies["router success@0.3"].accuracy


def test_budget_needs_success_models_and_calibration():
    recs = gains_ladder()
    model = train_router(recs, seed=0)
    old = type(model)(**{**model.__dict__, "meta": {k: v for k, v in model.meta.items() if k != "budget_calibration"}})
    assert not any(k.startswith("router budget") for k in route(recs, old).policies)  # older artefacts: no rows
    with pytest.raises(ArtefactError, match="budget_calibration"):
        route(recs, old, budgets=(2.0,))
    flat = type(model)(**{**model.__dict__, "costs": (1.0, 1.0, 5.0)})  # tiers not cheaper-first in cost
    assert not any(k.startswith("router budget") for k in route(recs, flat).policies)
    with pytest.raises(ArtefactError, match="increasing"):
        route(recs, flat, budgets=(2.0,))
