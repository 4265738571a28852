"""llmnet in LangGraph graphs (extra ``langgraph``).

* ``router_edge(router, branches)``: an llmnet router (ComplexityNet, SMART, rule, or any
  ``Router``) as a conditional-edge function: ``graph.add_conditional_edges(START,
  router_edge(spec), {...})``. It reads the question (and any query fields) from the state.
* ``network_node(network, cache=None)``: a whole network as a node (sync and async), writing
  the answer, the branch and the usage into the state; calls share one engine. ``cache`` means
  what it means for ``network.ainvoke`` / ``invoke``: off by default (every call pays for its
  samples and no file is written); a SQLite path or a ``SampleCache`` reads and writes that
  per-sample cache, so a repeated question is answered from it.

Both read the state as a mapping (a TypedDict state) or an object with attributes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableLambda

from llmnet.execute.cache import SampleCache
from llmnet.execute.session import BackgroundLoop, Session, as_query
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
                 fields: Sequence[str] | None = None, cache: str | Path | SampleCache | None = None,
                 **session_options: Any) -> RunnableLambda:
    """A LangGraph node running ``network`` on the state's question; returns ``{answer_key: answer,
    "llmnet": {branch, calls, cache_hits, cost_usd, correct}}``. Works under ``graph.invoke``
    and ``graph.ainvoke``.

    ``cache``: as for ``network.ainvoke(q, cache=...)``: None (the default) uses no cache, so every
    call pays for its samples and writes no file; a SQLite path or a ``SampleCache`` reads and writes
    that per-sample cache, so a question asked again is answered from it (``cache_hits``, no calls).
    Without other options the node's calls go through ``network.invoke`` / ``ainvoke`` with that
    cache (one engine per network, cache and event loop); ``session_options`` (``max_cost``,
    ``concurrency``, ``seed``, ``backends``) give the node its own ``Session`` per event loop instead
    (blocking calls: one on a background loop).
    """
    sessions: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()  # per event loop
    blocking: list[tuple[BackgroundLoop, Session]] = []
    opening = threading.Lock()  # LangGraph may run a sync node from several threads at once

    def update(result: Any) -> dict[str, Any]:
        u = result.usage
        return {answer_key: result.answer,
                "llmnet": {"network": network.name, "branch": result.branch, "calls": u.calls,
                           "cache_hits": u.cache_hits, "cost_usd": round(u.cost_usd, 10), "correct": result.correct}}

    async def open_session() -> Session:
        return Session(network, cache=cache, **session_options)

    def run(state: Any) -> dict[str, Any]:
        query = _fields(state, question_key, fields)
        if not session_options:
            return update(network.invoke(query, cache=cache))
        with opening:
            if not blocking:
                runner = BackgroundLoop()
                blocking.append((runner, runner.run(open_session())))
        runner, session = blocking[0]
        return update(runner.run(session.ainvoke(query)))

    async def arun(state: Any) -> dict[str, Any]:
        import asyncio

        query = _fields(state, question_key, fields)
        if not session_options:
            return update(await network.ainvoke(query, cache=cache))
        loop = asyncio.get_running_loop()
        session = sessions.get(loop)
        if session is None or session.closed:
            session = sessions[loop] = await open_session()
        return update(await session.ainvoke(query))

    return RunnableLambda(run, afunc=arun, name=network.name)
