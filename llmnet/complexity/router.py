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
