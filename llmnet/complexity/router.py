"""The ComplexityNet gate router: a trained classifier picks the tier (subgraph) per query.

    router: {kind: complexitynet, path: routers/arithmetic_router.json, rule: cost_aware, target: 0.8}

The artefact (``llmnet complexity train``) predicts, from the query's question text, the
probability of each *label*, the cheapest tier that solves the task (Bae et al., arXiv
2312.11511). Two decision rules:

* ``predicted`` (the paper): the most likely tier (class probabilities summed per tier;
  ties go to the cheaper tier).
* ``cost_aware`` (beyond the paper): the cheapest tier j with
  P(label <= j) = sum_{i <= j} P(label = i) >= ``target``. This reads "tier j solves" as
  "label <= j", true only if a stronger tier solves whatever a cheaper one does and the
  label is the cheapest solving tier (``--rule threshold``). Under the paper's rule it is
  false (class 2, "GPT-3.5 needed", is grouped with Code Llama), and under any rule the
  target is a probability about the *label*, not a success rate: read its realised
  success beside the target, never as the target. The top tier always qualifies.
* ``success`` (beyond the paper): the cheapest tier whose own success model predicts
  P(tier solves the task) >= ``target`` (``RouterModel.success_proba``, trained on pass
  counts); without one, the tier of highest predicted success (ties: cheaper). Here the
  target is an expected success rate per task.

Beyond these, ``decide_budget`` / ``fit_lambda`` implement the ``budget`` rule used by the
evaluation (``llmnet.complexity.evaluate``; not a gate rule: a gate would need the lambda
stored in the artefact): route each task to argmax_t p_t(x) - lambda * c_t, lambda fitted so
the mean cost per task meets a budget.

Branches default to the tier names; ``tiers: {tier: branch}`` maps them otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmnet.complexity.classifier import RouterModel, load_router_model
from llmnet.errors import ArtefactError
from llmnet.routing import Router, register_router
from llmnet.tasks.query import Query

RULES = ("predicted", "cost_aware", "success")


def decide(tier_proba: np.ndarray, rule: str = "predicted", target: float = 0.8) -> np.ndarray:
    """Tier index per row of ``tier_proba`` (rows: tasks, columns: tiers cheapest first).

    For ``rule="success"`` the columns are P(tier solves), not label probabilities.
    """
    proba = np.atleast_2d(tier_proba)
    if rule == "success":
        clears = proba >= target - 1e-12
        return np.where(clears.any(axis=1), np.argmax(clears, axis=1), np.argmax(proba, axis=1))
    if rule == "predicted":
        return np.argmax(proba, axis=1)  # the first maximum: ties go to the cheaper tier
    if rule == "cost_aware":
        cumulative = np.cumsum(proba, axis=1)
        cumulative[:, -1] = 1.0
        return np.argmax(cumulative >= target - 1e-12, axis=1)
    raise ValueError(f"unknown rule '{rule}' (known: {', '.join(RULES)})")


def decide_budget(p_success: np.ndarray, tier_costs: Sequence[float], lam: float) -> np.ndarray:
    """Tier per task maximising p_t(x) - lam * c_t (ties: the cheaper tier; tiers sorted cheapest first).

    The ``budget`` rule (beyond the paper). "Maximise the expected number of solved tasks,
    sum_x p_{t(x)}(x), subject to mean cost (1/n) sum_x c_{t(x)} <= B" is a knapsack over
    tasks; its Lagrangian sum_x [p_{t(x)}(x) - lam * c_{t(x)}] + lam * n * B separates per
    task, so for a fixed multiplier lam >= 0 the best assignment picks argmax_t p_t(x) - lam c_t
    independently for every task (the standard Lagrangian / greedy-by-marginal-gain
    solution of the multiple-choice knapsack; by Everett's theorem, H. Everett III, Operations
    Research 11(3), 1963, it is optimal among all routings that spend no more than it does).
    Unlike ``success`` (the cheapest tier with p_t(x) >= target, a per-task threshold), a
    task moves up a tier only when the *gain* p_{t+1}(x) - p_t(x) is worth at least lam per
    extra unit of cost, so calls go where they buy the most expected successes.
    """
    p = np.atleast_2d(np.asarray(p_success, dtype=float))
    c = np.asarray(tier_costs, dtype=float)
    value = p - lam * c[None, :]
    best = value >= value.max(axis=1, keepdims=True) - 1e-12
    return np.argmax(best, axis=1)  # the first (cheapest) tier within 1e-12 of the best value


def fit_lambda(p_success: np.ndarray, tier_costs: Sequence[float], budget: float, iterations: int = 100
               ) -> tuple[float, float]:
    """The smallest lam >= 0 whose ``decide_budget`` routing has mean cost <= ``budget`` on these tasks.

    ``budget`` is a mean cost per task in the tiers' cost unit (model calls on the local
    ladder). The mean cost is a non-increasing step function of lam, so bisection finds the
    step; a deterministic rule cannot hit a budget between two steps, so the realised cost
    is the largest reachable one not above the budget. A budget below the cheapest tier's
    cost routes everything to the cheapest tier (the cost returned says so). Returns
    (lam, mean cost on these tasks).
    """
    p = np.atleast_2d(np.asarray(p_success, dtype=float))
    c = np.asarray(tier_costs, dtype=float)
    if not np.all(np.diff(c) > 0):
        raise ArtefactError(f"the budget rule needs tier costs increasing from the cheapest tier, got {c.tolist()}")

    def mean_cost(lam: float) -> float:
        return float(c[decide_budget(p, c, lam)].mean())

    if mean_cost(0.0) <= budget + 1e-12:
        return 0.0, mean_cost(0.0)
    # above hi every task takes the cheapest tier: no gain p_j - p_0 <= 1 is worth (c_j - c_0) * hi
    lo, hi = 0.0, 2.0 / float(np.min(c[1:] - c[0]))
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if mean_cost(mid) <= budget + 1e-12:
            hi = mid
        else:
            lo = mid
    return hi, mean_cost(hi)


class ComplexityNetRouter(Router):
    """Routes a query to the tier its question's predicted complexity calls for."""

    def __init__(self, model: RouterModel, rule: str = "predicted", target: float = 0.8,
                 tiers: Mapping[str, str] | None = None, source: str = "router"):
        if rule not in RULES:
            raise ArtefactError(f"{source}: unknown rule '{rule}' (known: {', '.join(RULES)})")
        if rule == "success" and model.success is None:
            raise ArtefactError(f"{source}: rule 'success' needs per-tier success models; retrain the router with "
                                f"'llmnet complexity train'")
        unknown = [t for t in (tiers or {}) if t not in model.tiers]
        if unknown:
            raise ArtefactError(f"{source}: router.tiers names unknown tier '{unknown[0]}' (the artefact's tiers: "
                                f"{', '.join(model.tiers)})")
        self.model = model
        self.rule = rule
        self.target = target
        self.branch_of = {t: (tiers or {}).get(t, t) for t in model.tiers}
        self.source = source

    @classmethod
    def from_spec(cls, spec: Any, base: Path | None = None) -> "ComplexityNetRouter":
        path = Path(spec.path).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return cls(load_router_model(path), spec.rule, spec.target, dict(spec.tiers), str(path))

    def tiers_for(self, texts: Sequence[str]) -> list[str]:
        """The chosen tier name for each text."""
        texts = list(texts)
        proba = self.model.success_proba(texts) if self.rule == "success" else self.model.tier_proba(texts)
        return [self.model.tiers[i] for i in decide(proba, self.rule, self.target)]

    def choose(self, query: Query, prompt: str, branches: Sequence[str]) -> str:
        (tier,) = self.tiers_for([query.question])
        branch = self.branch_of[tier]
        if branch not in branches:
            raise ArtefactError(f"{self.source}: tier '{tier}' routes to branch '{branch}', which the gate does not "
                                f"have (branches: {', '.join(branches)}); map it with router.tiers")
        return branch


register_router("complexitynet", ComplexityNetRouter.from_spec)
