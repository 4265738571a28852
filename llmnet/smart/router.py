"""The ``smart`` router: apply a SMART plan (``llmnet smart --out DIR`` writes ``DIR/plan.json``).

Items the plan assigned go to their model's branch; any other item goes to a model
drawn by the plan's shares, deterministically from a hash of its id (so a batch run
splits new items in the plan's proportions, reproducibly).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from llmnet.errors import ArtefactError
from llmnet.routing import Router, register_router
from llmnet.routing.specs import SmartRouterSpec
from llmnet.tasks.query import Query

PLAN_FORMAT, PLAN_VERSION = "llmnet-smart-plan", 1


class SmartRouter(Router):
    def __init__(self, plan: dict, branches: dict[str, str]):
        self.assignment = plan.get("assignment", {})
        shares = plan["shares"]
        self.branch_of = {m: branches.get(m, m) for m in {*shares, *self.assignment.values()}}
        total = sum(shares.values()) or 1.0
        acc, self.cumulative = 0.0, []
        for model, share in sorted(shares.items()):
            acc += share / total
            self.cumulative.append((acc, model))

    def choose(self, query: Query, prompt: str, branches: Sequence[str]) -> str:
        model = self.assignment.get(query.id)
        if model is None:
            u = int.from_bytes(hashlib.blake2b(query.id.encode(), digest_size=8).digest(), "little") / 2**64
            model = next((m for c, m in self.cumulative if u < c), self.cumulative[-1][1])
        return self.branch_of[model]


def load_plan(path: Path) -> dict:
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path}: cannot read SMART plan: {exc}") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise ArtefactError(f"{path}: not a SMART plan (write one with `llmnet smart ... --out DIR`)")
    if plan.get("version") != PLAN_VERSION:
        raise ArtefactError(f"{path}: SMART plan version {plan.get('version')} is not supported "
                            f"(this llmnet reads version {PLAN_VERSION})")
    if not isinstance(plan.get("shares"), dict) or not plan["shares"]:
        raise ArtefactError(f"{path}: SMART plan has no shares")
    return plan


def build(spec: SmartRouterSpec, base: Path | None) -> SmartRouter:
    path = Path(spec.path)
    if not path.is_absolute() and base is not None:
        path = base / path
    return SmartRouter(load_plan(path), dict(spec.branches))


register_router("smart", build)
