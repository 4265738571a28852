"""Routers for gate nodes: given a query, pick one branch.

One abstract method (``choose``). Routers are built from their YAML spec by
``build_router``; new kinds register a builder with ``register_router``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmnet.errors import LlmnetError
from llmnet.routing.specs import RuleRouterSpec

if TYPE_CHECKING:  # annotations only: routing sits below tasks and must not import it at run time
    from llmnet.tasks.query import Query


class Router(ABC):
    """Picks one of a gate's branches for a query."""

    @abstractmethod
    def choose(self, query: Query, prompt: str, branches: Sequence[str]) -> str:
        """Return the name of the branch that should answer ``query`` (``prompt`` is its rendered prompt)."""


class AsyncRouter(Router):
    """A router that may await, and call the network's models, to decide (an LLM classifier).

    ``models.complete(model, prompt, samples=1, temperature=0, max_tokens=16, stop=(), seed=0)``
    returns completions from a model declared under the network's ``models:``, through the
    executor: cached per sample, under the model's limits, and counted in the gate's usage.
    """

    @abstractmethod
    async def achoose(self, query: Query, prompt: str, branches: Sequence[str], models: Any) -> str:
        """Return the branch for ``query``; ``models`` calls the network's models."""

    def choose(self, query: Query, prompt: str, branches: Sequence[str]) -> str:
        raise TypeError(f"{type(self).__name__} is an async router: the executor calls achoose()")


class RuleRouter(Router):
    """First matching rule wins (``field op value -> branch``), else the default branch."""

    def __init__(self, spec: RuleRouterSpec):
        self.spec = spec
        self._regex = {i: re.compile(str(r.value)) for i, r in enumerate(spec.rules) if r.op == "matches"}

    def _holds(self, i: int, op: str, actual: Any, value: Any) -> bool:
        if actual is None:
            return False
        try:
            if op == "eq":
                return actual == value or str(actual) == str(value)
            if op == "ne":
                return not (actual == value or str(actual) == str(value))
            if op in ("lt", "le", "gt", "ge"):
                a, v = float(actual), float(value)
                return {"lt": a < v, "le": a <= v, "gt": a > v, "ge": a >= v}[op]
            if op == "in":
                return actual in value or str(actual) in [str(x) for x in value]
            if op == "contains":
                return str(value) in str(actual)
            if op == "matches":
                return self._regex[i].search(str(actual)) is not None
        except (TypeError, ValueError):
            return False
        return False

    def choose(self, query: Query, prompt: str, branches: Sequence[str]) -> str:
        for i, rule in enumerate(self.spec.rules):
            actual = len(prompt) if rule.field == "prompt_length" else query.get(rule.field)
            if self._holds(i, rule.op, actual, rule.value):
                return rule.branch
        return self.spec.default


_BUILDERS: dict[str, Callable[[Any, Path | None], Router]] = {"rule": lambda spec, base: RuleRouter(spec)}


def register_router(kind: str, builder: Callable[[Any, Path | None], Router]) -> None:
    """Make ``router: {kind: KIND}`` buildable; ``builder(spec, base_dir) -> Router``."""
    _BUILDERS[kind] = builder


def router_kinds() -> list[str]:
    """The router kinds registered now (built-in, wings', and the user's)."""
    return sorted(_BUILDERS)


def build_router(spec: Any, base: Path | None = None) -> Router:
    """The Router for a gate's ``router`` spec; ``base`` resolves relative artefact paths."""
    if isinstance(spec, Router):
        return spec
    if spec.kind not in _BUILDERS:
        raise LlmnetError(f"router kind '{spec.kind}' is not registered (known: {', '.join(sorted(_BUILDERS))}); "
                          "import the module that registers it (llmnet registers its own on import)")
    return _BUILDERS[spec.kind](spec, base)
