"""Node kinds: one module each, one ``run`` each; ``register_node`` adds your own."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from llmnet.network.spec import register_node_spec
from llmnet.nodes import gate, generator, judge, rank, refine, select, tournament, vote

RUNNERS: dict[str, Callable[..., Any]] = {
    "generator": generator.run,
    "refine": refine.run,
    "vote": vote.run,
    "judge": judge.judge,
    "filter": judge.filter_,
    "filter_vote": judge.filter_vote,
    "select": select.run,
    "rank": rank.run,
    "tournament": tournament.run,
}


def register_node(kind: str, run: Callable[..., Any], spec_model: type, produces: str = "answer") -> type:
    """Make ``kind: KIND`` usable in network files and the builder, validated like a built-in kind.

    ``run`` is ``async def run(ctx, name, spec, inputs)`` (see ``llmnet.nodes.base.Context``):
    ``inputs`` holds one output per name in ``spec.inputs``, each a list of ``Candidate`` or an
    ``Answer``; it returns an ``Answer`` (``produces="answer"``) or a list of ``Candidate``
    (``produces="candidates"``, so vote, judge, select, ... may read it). ``spec_model`` is a
    pydantic model, best a subclass of ``llmnet.nodes.CustomNode`` (or ``CustomCallNode`` when
    it calls a model through ``ctx.sample``, cached, limited and counted like any call).
    Unknown keys, unknown inputs or models, cycles and bad templates are reported exactly as
    for built-in kinds. Returns the spec model in use.
    """
    if not inspect.iscoroutinefunction(run):
        raise TypeError("run must be an async function: async def run(ctx, name, spec, inputs)")
    model = register_node_spec(kind, spec_model, produces)
    RUNNERS[kind] = run
    return model


__all__ = ["RUNNERS", "gate", "register_node"]
