"""One query at a time: ``network.ainvoke(question)`` and ``async with network.session() as s``.

A ``Session`` holds one ``Engine`` (backends, limits, cache, budget) for as many queries as
its user sends, so a web server, a LangGraph node or a DSPy module pays the start-up once and
every call shares the rate limits and the cache. ``ainvoke`` returns an ``Invocation``: the
answer, the trace, the summed usage and the branch a gate chose. Unlike ``run_network``,
which records a query's failure and goes on, ``ainvoke`` raises it: one query, one answer or
one error.

``Network.ainvoke`` / ``invoke`` / ``session`` are attached by ``install()`` (the network layer
sits below the executor and cannot import it). ``invoke`` (blocking) runs the same sessions on
one background event loop, so repeated calls share one engine too.

The cache is off unless asked for: ``network.ainvoke(q)`` writes no file and every call pays
for its samples (a library call should not leave a database in the working directory, and a
repeated question to a sampling model is not silently answered from an old run).
``network.ainvoke(q, cache="samples.sqlite")`` (or a ``SampleCache``) reads and writes that
cache; calls on one event loop with the same network and the same cache (same resolved path,
or same object) share one engine, so a repeated query is a cache hit and every call shares
the model limits. Each ``await`` returns after its samples are committed, so nothing is lost
when the loop ends. ``network.session(...)`` gives one engine with every option (budget,
concurrency, seed, backends) and closes it on exit.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmnet.errors import DatasetError, LlmnetError
from llmnet.execute.cache import SampleCache
from llmnet.execute.engine import Engine, QueryRun, plain_trace
from llmnet.execute.usage import Usage
from llmnet.network.graph import Network
from llmnet.network.templates import render
from llmnet.tasks.datasets import query_from_record
from llmnet.tasks.query import Query


@dataclass(frozen=True)
class Invocation:
    """What one query gave: ``answer`` (extracted), ``branch`` (gate choices joined by '/', None
    without a gate), ``branches`` (gate -> branch), ``usage`` summed over every call, ``trace``
    per node, ``correct`` when the query carried its truth, ``latency_s`` of the whole query."""

    query: Query
    answer: str | None
    text: str | None
    correct: bool | None
    branch: str | None
    branches: dict[str, str]
    usage: Usage
    trace: dict[str, dict[str, Any]] = field(repr=False)
    latency_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.query.id, "answer": self.answer, "correct": self.correct, "branch": self.branch,
                "branches": self.branches, "usage": self.usage.to_dict(), "latency_s": round(self.latency_s, 6),
                "trace": self.trace}


def as_query(query_or_question: Query | str | Mapping[str, Any]) -> Query:
    """A Query from a Query, a question string or a mapping of fields (``question`` required;
    ``id`` defaults to a hash of the question so the same question is the same query)."""
    if isinstance(query_or_question, Query):
        return query_or_question
    if isinstance(query_or_question, str):
        record: dict[str, Any] = {"question": query_or_question}
    elif isinstance(query_or_question, Mapping):
        record = dict(query_or_question)
    else:
        raise DatasetError(f"a query is a question string, a mapping or a Query, not {type(query_or_question).__name__}")
    if "id" not in record and isinstance(record.get("question"), str):
        record["id"] = "q-" + hashlib.blake2b(record["question"].encode("utf-8", "surrogatepass"),
                                              digest_size=6).hexdigest()
    return query_from_record(record, "query")


class Session:
    """One engine shared by many queries; use as ``async with network.session(...) as s``.

    ``cache`` is a SQLite path (or a ``SampleCache``); ``max_cost`` a dollar budget over the
    session; ``concurrency`` caps queries in flight (others wait); ``backends`` replaces model
    backends by name (tests, custom backends); ``seed`` seeds vote tie-breaks as in ``run``.
    """

    def __init__(self, network: Network, *, cache: str | Path | SampleCache | None = None,
                 max_cost: float | None = None, seed: int = 0, concurrency: int = 256,
                 backends: Mapping[str, Any] | None = None):
        self.network = network
        self._own_cache = cache is not None and not isinstance(cache, SampleCache)
        self.cache = SampleCache(Path(cache)) if self._own_cache else cache  # type: ignore[arg-type]
        self.engine = Engine(network, self.cache, max_cost, seed, backends)
        self._slots = asyncio.Semaphore(concurrency)
        self.total = Usage()
        self.queries = 0
        self.closed = False

    async def ainvoke(self, query_or_question: Query | str | Mapping[str, Any]) -> Invocation:
        """Run the network on one query; raises the query's failure (a BackendError, ...)."""
        if self.closed:
            raise LlmnetError("this session is closed")
        query = as_query(query_or_question)
        task = self.network.spec.task
        async with self._slots:
            started = time.perf_counter()
            ctx = QueryRun(self.engine, query, render(task.prompt, query.template_values()), task.answer)
            try:
                result = await self.engine.run_graph(self.network, ctx)
                await self.engine.committed()  # what it paid for is in the cache when it returns
            finally:
                usage = ctx.total_usage()
                self.total.add(usage)
                self.queries += 1
        branches = {node: entry["branch"] for node, entry in ctx.trace.items() if "branch" in entry}
        return Invocation(query, result.answer, result.text, ctx.is_correct(result.answer),
                          "/".join(branches.values()) or None, branches, usage,
                          plain_trace(ctx.trace), time.perf_counter() - started)

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.engine.aclose()
            if self._own_cache and self.cache is not None:
                self.cache.close()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class BackgroundLoop:
    """A daemon thread running one event loop, for blocking ``invoke`` calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llmnet-invoke", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_DEFAULT: "weakref.WeakKeyDictionary[Any, dict[tuple[int, Any], Session]]" = weakref.WeakKeyDictionary()
_BACKGROUND: BackgroundLoop | None = None
_LOCK = threading.Lock()

CacheArg = str | Path | SampleCache | None


def _cache_key(cache: CacheArg) -> Any:
    """Which cache a call asks for: none, an open ``SampleCache`` (by identity) or a file (by resolved path)."""
    if cache is None:
        return None
    if isinstance(cache, SampleCache):
        return ("object", id(cache))  # the session keeps the object alive, so its id is not reused meanwhile
    if isinstance(cache, (str, Path)):
        return ("path", str(Path(cache).expanduser().resolve()))
    raise LlmnetError(f"cache must be a SQLite path, a SampleCache or None, not {type(cache).__name__}")


def default_session(network: Network, cache: CacheArg = None) -> Session:
    """The session ``network.ainvoke(q, cache=cache)`` uses on the running loop (made on first use)."""
    key = (id(network), _cache_key(cache))  # by identity: equal networks hash alike
    loop = asyncio.get_running_loop()
    sessions = _DEFAULT.setdefault(loop, {})  # type: ignore[arg-type]
    session = sessions.get(key)
    if session is None or session.closed:
        session = sessions[key] = Session(network, cache=cache)
        # not at exit: the thread pools are shut down by then (a closing session's last step would raise);
        # every call returned after its samples were committed, so exit loses nothing
        weakref.finalize(network, _forget, weakref.ref(loop), key).atexit = False
    return session


_CLOSING: set[asyncio.Task] = set()


def _forget(loop_ref: "weakref.ref[asyncio.AbstractEventLoop]", key: tuple[int, Any]) -> None:
    """When a network is gone, drop its default sessions and close them on their loop if it still runs."""
    loop = loop_ref()
    session = _DEFAULT.get(loop, {}).pop(key, None) if loop is not None else None
    if session is None or loop is None or loop.is_closed() or not loop.is_running():
        return

    def close() -> None:
        task = loop.create_task(session.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    loop.call_soon_threadsafe(close)


async def ainvoke(network: Network, query_or_question: Query | str | Mapping[str, Any], *,
                  cache: CacheArg = None) -> Invocation:
    """``await network.ainvoke(q, cache=None)``: one query through this network's session for
    ``cache`` on the running loop (no cache by default; see the module's docstring)."""
    return await default_session(network, cache).ainvoke(query_or_question)


def invoke(network: Network, query_or_question: Query | str | Mapping[str, Any], *,
           cache: CacheArg = None) -> Invocation:
    """``network.invoke(q, cache=None)``: blocking; runs ``ainvoke`` on one background loop, so
    calls with the same network and cache share one engine."""
    global _BACKGROUND
    with _LOCK:
        if _BACKGROUND is None:
            _BACKGROUND = BackgroundLoop()
        runner = _BACKGROUND
    return runner.run(ainvoke(network, query_or_question, cache=cache))


def session(network: Network, **options: Any) -> Session:
    """``async with network.session(cache=..., max_cost=..., concurrency=...) as s``."""
    return Session(network, **options)


def install() -> None:
    """Serve ``Network.ainvoke``, ``invoke`` and ``session`` (see ``llmnet.network.graph.RUNNER``)."""
    from llmnet.network import graph

    graph.RUNNER.update(ainvoke=ainvoke, invoke=invoke, session=session)
