"""Router specifications for gate nodes (``router: {kind: ...}``).

A gate node holds one of these; ``llmnet.routing.build_router`` turns it into a Router.
New router kinds add a spec class here and a builder in ``llmnet.routing``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RULE_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "matches")


class Rule(_Strict):
    """Send the query to ``branch`` when ``<field> <op> <value>`` holds.

    ``field`` is a field of the query (``difficulty``, ``id``, any JSONL field) or one of
    the derived fields ``question_length`` (characters), ``question_words`` and
    ``prompt_length`` (characters of the rendered task prompt).
    """

    field: str = Field(min_length=1)
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "matches"]
    value: Any
    branch: str = Field(min_length=1)


class RuleRouterSpec(_Strict):
    """The first matching rule picks the branch; otherwise ``default``."""

    kind: Literal["rule"]
    rules: list[Rule] = Field(default_factory=list)
    default: str = Field(min_length=1)

    def branch_names(self) -> list[tuple[str, str]]:
        """(YAML sub-path, branch) for every branch this router can choose."""
        return [(f"rules[{i}].branch", r.branch) for i, r in enumerate(self.rules)] + [("default", self.default)]


class ComplexityNetRouterSpec(_Strict):
    """A trained ComplexityNet classifier (``llmnet complexity train``) picks the tier.

    ``rule: predicted`` routes to the most likely tier (the paper); ``rule: cost_aware``
    to the cheapest tier j with P(label <= j) >= ``target``; ``rule: success`` to the
    cheapest tier whose own success model predicts P(tier solves) >= ``target``.
    """

    kind: Literal["complexitynet"]
    path: str = Field(min_length=1)
    rule: Literal["predicted", "cost_aware", "success"] = "predicted"
    target: float = Field(0.8, gt=0, le=1)
    tiers: dict[str, str] = Field(
        default_factory=dict, description="map from the classifier's tier names to branch names (default: same names)"
    )

    def branch_names(self) -> list[tuple[str, str]]:
        return [(f"tiers.{k}", v) for k, v in self.tiers.items()]


class SmartRouterSpec(_Strict):
    """Route items by a SMART plan (``llmnet smart --out DIR`` writes ``DIR/plan.json``)."""

    kind: Literal["smart"]
    path: str = Field(min_length=1)
    branches: dict[str, str] = Field(
        default_factory=dict, description="map from the plan's model names to branch names (default: same names)"
    )

    def branch_names(self) -> list[tuple[str, str]]:
        return [(f"branches.{k}", v) for k, v in self.branches.items()]


class CustomRouterSpec(_Strict):
    """A router kind registered from Python (``llmnet.register_router(kind, builder)``).

    ``branches`` lists what it may choose (each checked against the gate's branches);
    ``options`` is passed to the builder untouched, as ``spec.options``.
    """

    kind: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    branches: list[str] = Field(default_factory=list, description="the branches this router may choose")
    options: dict[str, Any] = Field(default_factory=dict, description="settings for the registered builder")

    def branch_names(self) -> list[tuple[str, str]]:
        return [(f"branches[{i}]", b) for i, b in enumerate(self.branches)]


BUILTIN_ROUTERS = {"rule": RuleRouterSpec, "complexitynet": ComplexityNetRouterSpec, "smart": SmartRouterSpec}


def _router_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in BUILTIN_ROUTERS else "custom"


RouterSpec = Annotated[
    Union[Annotated[RuleRouterSpec, Tag("rule")], Annotated[ComplexityNetRouterSpec, Tag("complexitynet")],
          Annotated[SmartRouterSpec, Tag("smart")], Annotated[CustomRouterSpec, Tag("custom")]],
    Discriminator(_router_tag),
]
