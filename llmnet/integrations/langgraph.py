"""llmnet in LangGraph graphs (extra ``langgraph``).

* ``router_edge(router, branches)``: an llmnet router (ComplexityNet, SMART, rule, or any
  ``Router``) as a conditional-edge function: ``graph.add_conditional_edges(START,
  router_edge(spec), {...})``. It reads the question (and any query fields) from the state.
* ``network_node(network)``: a whole network as a node (sync and async), writing the answer,
  the branch and the usage into the state; all calls of one node share one engine.

Both read the state as a mapping (a TypedDict state) or an object with attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableLambda

from llmnet.execute.session import Session, as_query
from llmnet.network.graph import Network
from llmnet.network.templates import render
from llmnet.routing import Router, build_router
from llmnet.routing.specs import RouterSpec


def _fields(state: Any, question_key: str, fields: Sequence[str] | None) -> dict[str, Any]:
    data = dict(state) if isinstance(state, Mapping) else dict(vars(state))
    if question_key not in data:
        raise KeyError(f"the graph state has no '{question_key}' (the question); has: {', '.join(sorted(data))}")
    keep = data if fields is None else {k: data[k] for k in fields if k in data}
    out = {k: v for k, v in keep.items() if isinstance(v, (str, int, float, bool)) or k == "choices"}
    out["question"] = data[question_key]
    return out


def load_router(router: Router | Mapping[str, Any] | Any, base: str | Path | None = None) -> Router:
    """A Router from an instance, or from a gate's ``router:`` spec as a mapping (artefact paths
    relative to ``base``)."""
    if isinstance(router, Router):
        return router
    if isinstance(router, Mapping):
        from pydantic import TypeAdapter

        router = TypeAdapter(RouterSpec).validate_python(dict(router))
    return build_router(router, Path(base) if base else None)


def router_edge(router: Router | Mapping[str, Any], branches: Sequence[str], *, question_key: str = "question",
                fields: Sequence[str] | None = None, prompt: str = "{question}",
                base: str | Path | None = None):
    """A LangGraph conditional-edge function: state -> one of ``branches``, chosen by ``router``.

    ``prompt`` renders what a rule router's ``prompt_length`` measures; ``fields`` limits the
    state keys passed as query fields (default: every scalar key).
    """
    chosen = load_router(router, base)
    names = list(branches)

    def route(state: Any) -> str:
        query = as_query(_fields(state, question_key, fields))
        branch = chosen.choose(query, render(prompt, query.template_values()), names)
        if branch not in names:
            raise ValueError(f"the router chose '{branch}', which is not one of {names}")
        return branch

    return route


def network_node(network: Network, *, question_key: str = "question", answer_key: str = "answer",
                 fields: Sequence[str] | None = None, **session_options: Any) -> RunnableLambda:
    """A LangGraph node running ``network`` on the state's question; returns ``{answer_key: answer,
    "llmnet": {branch, calls, cache_hits, cost_usd, correct}}``. Works under ``graph.invoke``
    and ``graph.ainvoke``; ``session_options`` (cache, max_cost, ...) configure the async engine."""
    sessions: dict[int, Session] = {}

    def update(result: Any) -> dict[str, Any]:
        u = result.usage
        return {answer_key: result.answer,
                "llmnet": {"network": network.name, "branch": result.branch, "calls": u.calls,
                           "cache_hits": u.cache_hits, "cost_usd": round(u.cost_usd, 10), "correct": result.correct}}

    def run(state: Any) -> dict[str, Any]:
        return update(network.invoke(_fields(state, question_key, fields)))

    async def arun(state: Any) -> dict[str, Any]:
        import asyncio

        key = id(asyncio.get_running_loop())
        if key not in sessions or sessions[key].closed:
            sessions[key] = Session(network, **session_options)
        return update(await sessions[key].ainvoke(_fields(state, question_key, fields)))

    return RunnableLambda(run, afunc=arun, name=network.name)
