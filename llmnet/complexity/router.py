"""The ComplexityNet gate router: a trained classifier picks the tier (subgraph) per query.

    router: {kind: complexitynet, path: routers/arithmetic_router.json, rule: cost_aware, target: 0.8}

The artefact (``llmnet complexity train``) predicts, from the query's question text, the
probability of each *label*, the cheapest tier that solves the task (Bae et al., arXiv
2312.11511). Two decision rules:

* ``predicted`` (the paper): the most likely tier (class probabilities summed per tier;
  ties go to the cheaper tier).
* ``cost_aware`` (beyond the paper): the cheapest tier j whose success probability
  clears ``target``. Tiers are ordered so that a stronger tier solves what a cheaper one
  does (the monotone-tier assumption behind labelling), hence tier j solves the task
  exactly when the cheapest solving tier is j or below:
  P(tier j solves) = P(label <= j) = sum_{i <= j} P(label = i). The top tier always
  qualifies (its cumulative probability is 1). When unsolved tasks were labelled by
  ``--unsolved best`` or ``top`` the label means "no tier above j is worth paying for",
  and P(label <= j) is read as the probability that spending beyond tier j buys nothing.

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

RULES = ("predicted", "cost_aware")


def decide(tier_proba: np.ndarray, rule: str = "predicted", target: float = 0.8) -> np.ndarray:
    """Tier index per row of ``tier_proba`` (rows: tasks, columns: tiers cheapest first)."""
    proba = np.atleast_2d(tier_proba)
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
        return [self.model.tiers[i] for i in decide(self.model.tier_proba(list(texts)), self.rule, self.target)]

    def choose(self, query: Query, prompt: str, branches: Sequence[str]) -> str:
        (tier,) = self.tiers_for([query.question])
        branch = self.branch_of[tier]
        if branch not in branches:
            raise ArtefactError(f"{self.source}: tier '{tier}' routes to branch '{branch}', which the gate does not "
                                f"have (branches: {', '.join(branches)}); map it with router.tiers")
        return branch


register_router("complexitynet", ComplexityNetRouter.from_spec)
