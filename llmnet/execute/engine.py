"""The executor: runs a compiled network on queries, asynchronously.

Per query, a node starts as soon as its inputs are done (a chain simply runs in order;
a graph with parallel parts gets one task per node). Many queries run at once under a
global cap. A node's model calls go through the per-sample cache and the model's limits
(``Limited``); a failure is recorded on its query and the run goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from llmnet.backends import make_backend
from llmnet.backends.base import Request, Sample
from llmnet.errors import BackendError, BudgetExceeded, LlmnetError
from llmnet.execute.cache import SampleCache, request_key
from llmnet.execute.limits import CostBudget, Limited
from llmnet.execute.usage import Usage, price
from llmnet.network.graph import Network
from llmnet.network.templates import render
from llmnet.nodes import RUNNERS, gate
from llmnet.nodes.base import Answer, seeded_rng
from llmnet.routing import build_router
from llmnet.tasks.answers import code_task, extract, is_correct, passed_every_test
from llmnet.tasks.query import Query

MAX_REASKS = 8


@dataclass
class QueryRun:
    """One query's run: the Context nodes see, plus its usage and trace."""

    engine: "Engine"
    query: Query
    prompt: str
    answer_spec: Any
    trace: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefix: str = ""

    def extract(self, text: str) -> str | None:
        return extract(self.answer_spec, text, self.query.choices)

    def is_correct(self, answer: str | None) -> bool | None:
        """Against the query's truth; a code query with tests is graded by its tests alone
        (its answer is a behaviour class, see ``llmnet.tasks.answers``)."""
        if self.answer_spec.kind == "code" and code_task(self.query) is not None:
            return passed_every_test(answer)
        return is_correct(self.answer_spec, answer, self.query.answer)

    def rng(self, name: str, seed: int = 0):
        return seeded_rng(self.engine.seed, seed, self.query.id, self.prefix + name)

    def note(self, name: str, **info: Any) -> None:
        self.trace.setdefault(self.prefix + name, {}).update(info)

    async def sample(self, name: str, spec: Any, prompt: str, k: int, role: str = "generate",
                     candidate: str | None = None, n_candidates: int = 0, offset: int = 0) -> list[str]:
        """K samples of ``prompt``; sample i is drawn with seed ``spec.seed + offset + i``."""
        request = Request(prompt=prompt, n=k, seed=spec.seed + offset, temperature=spec.temperature, top_p=spec.top_p,
                          max_tokens=spec.max_tokens, stop=tuple(spec.stop), api=spec.api,
                          system=self.engine.network.spec.task.system,
                          choices=self.query.choices if self.answer_spec.kind == "choice" and role == "generate"
                          else None, role=role, query=self.query, candidate=candidate, n_candidates=n_candidates)
        entry = self.trace.get(self.prefix + name)
        if entry is None:
            entry = self.trace[self.prefix + name] = {"model": spec.model, "usage": Usage()}
        samples = await self.engine.samples(spec.model, request, entry["usage"])  # failures are counted too
        return [s.text for s in samples]

    def total_usage(self) -> Usage:
        total = Usage()
        for entry in self.trace.values():
            if "usage" in entry:
                total.add(entry["usage"])
        return total

    async def run_branch(self, gate_name: str, branch: str, network: Network) -> Answer:
        child = replace(self, prefix=f"{self.prefix}{gate_name}/{branch}/")  # shares usage and trace
        return await self.engine.run_graph(network, child)


class Engine:
    """Holds the backends, limits, cache and totals for one run of one network."""

    def __init__(self, network: Network, cache: SampleCache | None = None, max_cost: float | None = None,
                 seed: int = 0, backends: Mapping[str, Any] | None = None):
        self.network = network
        self.cache = cache
        self.seed = seed
        self.budget = CostBudget(max_cost)
        used = network.models_used()
        given = dict(backends or {})  # Backend instances by model name (tests, custom backends)
        self.models = {name: Limited(given.get(name) or make_backend(name, network.spec.models[name]), self.budget)
                       for name in network.spec.models if name in used}
        self._key_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.routers: dict[int, Any] = {}
        base = None
        if network.source:
            from pathlib import Path

            base = Path(network.source).resolve().parent
        self._router_base = base

    def router(self, spec: Any) -> Any:
        key = id(spec)
        if key not in self.routers:
            self.routers[key] = build_router(spec, self._router_base)
        return self.routers[key]

    async def samples(self, model: str, request: Request, usage: Usage) -> list[Sample]:
        """K samples for ``request`` (n = K), from the cache where possible, else paid for.

        What it took (calls, attempts, tokens, dollars) is added to ``usage``, failures included.
        """
        limited = self.models[model]
        usage.samples += request.n
        seeds = list(range(request.seed, request.seed + request.n))
        if self.cache is None:
            have = await self._fetch_missing(limited, request, seeds, {}, "", usage)
            return [have[s] for s in seeds]
        key = request_key(limited.backend.cache_identity(request), request)
        # queries with the same prompt wait for each other, so a sample is never paid twice
        lock, users = self._key_locks.get(key, (asyncio.Lock(), 0))
        self._key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                have = self.cache.get_many(key, seeds)
                if have:
                    usage.cache_hits += len(have)
                    p = sum(s.prompt_tokens for s in have.values())
                    c = sum(s.completion_tokens for s in have.values())
                    usage.cached_tokens += p + c
                    usage.cached_cost_usd += price(limited.spec, p, c)
                have = await self._fetch_missing(limited, request, seeds, have, key, usage)
        finally:
            lock, users = self._key_locks[key]
            if users == 1:
                del self._key_locks[key]
            else:
                self._key_locks[key] = (lock, users - 1)
        return [have[s] for s in seeds]

    async def _fetch_missing(self, limited: Limited, request: Request, seeds: list[int], have: dict[int, Sample],
                             key: str, usage: Usage) -> dict[int, Sample]:
        missing = [s for s in seeds if s not in have]
        if missing:
            runs = _contiguous(missing) if limited.backend.supports_n else [(s, 1) for s in missing]
            if len(runs) == 1:  # the common case: no tasks to create
                have.update(await self._fetch(limited, request, runs[0][0], runs[0][1], key, usage))
                return have
            results = await asyncio.gather(*(self._fetch(limited, request, start, n, key, usage)
                                             for start, n in runs), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            for r in results:
                have.update(r)
        return have

    async def _fetch(self, limited: Limited, request: Request, start: int, n: int, key: str,
                     usage: Usage) -> dict[int, Sample]:
        got: dict[int, Sample] = {}
        for _ in range(MAX_REASKS):
            if len(got) == n:
                break
            seed = start + len(got)
            sub = request if (seed, n - len(got)) == (request.seed, request.n) else replace(
                request, n=n - len(got), seed=seed)
            try:
                attempted = await limited.call(sub)
            except BackendError as exc:
                usage.attempts += getattr(exc, "attempts", 1)
                usage.errors += 1
                raise
            fresh = attempted.completion.samples[: n - len(got)]
            usage.calls += 1
            usage.attempts += attempted.attempts
            usage.latency_s += attempted.latency_s
            p = sum(s.prompt_tokens for s in fresh)
            c = sum(s.completion_tokens for s in fresh)
            usage.prompt_tokens += p
            usage.completion_tokens += c
            usage.cost_usd += price(limited.spec, p, c)
            new = {seed + j: s for j, s in enumerate(fresh)}
            if self.cache is not None and new:
                self.cache.put_many(key, list(new.items()))
            got.update(new)
        if len(got) < n:
            raise BackendError(f"model '{limited.backend.name}' returned {len(got)} of {n} samples after "
                               f"{MAX_REASKS} requests")
        return got

    async def run_graph(self, network: Network, ctx: QueryRun) -> Answer:
        nodes = network.spec.nodes
        outputs: dict[str, Any] = {}

        async def run_node(name: str) -> Any:
            spec = nodes[name]
            inputs = [outputs[i] for i in getattr(spec, "inputs", [])]
            if spec.kind == "gate":
                return await gate.run(ctx, name, spec, inputs, self.router(spec.router), network.branches[name])
            return await RUNNERS[spec.kind](ctx, name, spec, inputs)

        if all(d <= 1 for _, d in network.graph.in_degree) and all(d <= 1 for _, d in network.graph.out_degree):
            for name in network.order:
                outputs[name] = await run_node(name)
        else:
            tasks: dict[str, asyncio.Task] = {}

            async def after_inputs(name: str) -> Any:
                for inp in getattr(nodes[name], "inputs", []):
                    await tasks[inp]
                outputs[name] = await run_node(name)
                return outputs[name]

            for name in network.order:
                tasks[name] = asyncio.ensure_future(after_inputs(name))
            try:
                await asyncio.gather(*tasks.values())
            finally:
                for t in tasks.values():
                    t.cancel()
        result = outputs[network.output]
        if isinstance(result, list):  # a generator/judge/filter output: its first kept candidate answers
            kept = [c for c in result if c.weight > 0] or result
            return Answer(kept[0].answer if kept else None, kept[0].text if kept else None)
        return result

    async def run_query(self, query: Query) -> dict[str, Any]:
        """Run one query; returns its result record (errors recorded, never raised; BudgetExceeded re-raised)."""
        started = time.perf_counter()
        task = self.network.spec.task
        record: dict[str, Any] = {"id": query.id, "qhash": query_fingerprint(query)}
        ctx = None
        try:
            ctx = QueryRun(self, query, render(task.prompt, query.template_values()), task.answer)
            result = await self.run_graph(self.network, ctx)
            record.update(answer=result.answer, correct=ctx.is_correct(result.answer), error=None)
        except BudgetExceeded:
            raise
        except (LlmnetError, ValueError) as exc:
            record.update(answer=None, correct=False if query.answer is not None else None,
                          error=f"{type(exc).__name__}: {exc}")
        usage = ctx.total_usage() if ctx else Usage()
        record.update(truth=query.answer, calls=usage.calls, attempts=usage.attempts, samples=usage.samples,
                      cache_hits=usage.cache_hits, prompt_tokens=usage.prompt_tokens,
                      completion_tokens=usage.completion_tokens, cost_usd=round(usage.cost_usd, 10),
                      cached_tokens=usage.cached_tokens, cached_cost_usd=round(usage.cached_cost_usd, 10),
                      latency_s=round(time.perf_counter() - started, 6),
                      trace={k: _plain(v) for k, v in (ctx.trace if ctx else {}).items()})
        return record

    async def aclose(self) -> None:
        for limited in self.models.values():
            await limited.backend.aclose()


def query_fingerprint(query: Query) -> str:
    """A short hash of what a query asks, so a resumed run never reuses another query's result."""
    return hashlib.blake2b(f"{query.question}\x1f{query.answer}".encode("utf-8", "surrogatepass"),
                           digest_size=8).hexdigest()


def _plain(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.to_dict() if isinstance(v, Usage) else v) for k, v in entry.items()}


def _contiguous(seeds: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seeds:
        if runs and runs[-1][0] + runs[-1][1] == s:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((s, 1))
    return runs
