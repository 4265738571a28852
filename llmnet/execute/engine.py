"""The executor: runs a compiled network on queries, asynchronously.

Per query, a node starts as soon as its inputs are done (a chain simply runs in order;
a graph with parallel parts gets one task per node). Many queries run at once under a
global cap. A node's model calls go through the per-sample cache and the model's limits
(``Limited``); a failure is recorded on its query and the run goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmnet.backends import make_backend
from llmnet.backends.base import Request, Sample
from llmnet.errors import BackendError, BudgetExceeded, CacheError, LlmnetError
from llmnet.execute.cache import CLAIMED, CLAIMED_NEW, SampleCache, request_key
from llmnet.execute.commits import GroupCommit
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
ANSWER_MEMO = 4096  # texts whose extracted answer an engine remembers (then it starts afresh)
CLAIM_POLL_S = 0.05  # how often a process waiting for another's claimed sample looks again


class QueryRun:
    """One query's run: the Context nodes see, plus its usage and trace.

    A plain class with slots rather than a dataclass: one is made per query (and per gate
    branch), on the executor's hot path.
    """

    __slots__ = ("engine", "query", "prompt", "answer_spec", "trace", "prefix")

    def __init__(self, engine: "Engine", query: Query, prompt: str, answer_spec: Any,
                 trace: dict[str, dict[str, Any]] | None = None, prefix: str = ""):
        self.engine, self.query, self.prompt, self.answer_spec = engine, query, prompt, answer_spec
        self.trace = {} if trace is None else trace
        self.prefix = prefix

    def extract(self, text: str) -> str | None:
        """The answer in ``text``; remembered per (answer spec, choices, text), since samples repeat
        (a vote's K samples mostly agree, and queries share answers)."""
        spec, choices = self.answer_spec, self.query.choices
        if spec.kind == "code":  # a program is its own answer (and may be long: nothing to remember)
            return text
        memo = self.engine.answers
        known = memo.get((id(spec), choices, text))
        if known is not None and known[0] is spec:
            return known[1]
        answer = extract(spec, text, choices)
        if len(memo) >= ANSWER_MEMO:
            memo.clear()
        memo[(id(spec), choices, text)] = (spec, answer)
        return answer

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
        engine = self.engine
        params = engine.params.get(id(spec))
        if params is None or params[0] is not spec:
            params = (spec, spec.seed, spec.temperature, spec.top_p, spec.max_tokens, tuple(spec.stop), spec.api,
                      engine.network.spec.task.system)
            if not isinstance(spec, _RouterCall):  # node specs live as long as the network; a router's call does not
                engine.params[id(spec)] = params
        _, seed, temperature, top_p, max_tokens, stop, api, system = params
        choices = self.query.choices if role == "generate" and self.answer_spec.kind == "choice" else None
        request = Request(prompt, k, seed + offset, temperature, top_p, max_tokens, stop, api, system, choices,
                          role, self.query, candidate, n_candidates)
        key = self.prefix + name
        entry = self.trace.get(key)
        if entry is None:
            entry = self.trace[key] = {"model": spec.model, "usage": Usage()}
        samples = await engine.samples(spec.model, request, entry["usage"],  # failures are counted too
                                       payer=f"{self.query.id}\x1f{key}")
        remarks = [s.meta() for s in samples]  # reasoning, system_fingerprint, served model: when a server says
        if any(remarks):
            entry.setdefault("server", []).extend(remarks)
        if engine.keep_text:  # the raw completions, to see why e.g. a judge rejected every candidate
            entry.setdefault("texts", []).extend(s.text for s in samples)
        return [s.text for s in samples]

    def total_usage(self) -> Usage:
        total = Usage()
        for entry in self.trace.values():
            if "usage" in entry:
                total.add(entry["usage"])
        return total

    def router_models(self, gate_name: str) -> "RouterModels":
        """What an async router may call: the network's models, through this query's engine."""
        return RouterModels(self, gate_name)

    async def run_branch(self, gate_name: str, branch: str, network: Network) -> Answer:
        child = QueryRun(self.engine, self.query, self.prompt, self.answer_spec, self.trace,
                         f"{self.prefix}{gate_name}/{branch}/")  # shares usage and trace
        return await self.engine.run_graph(network, child)


@dataclass(frozen=True)
class _RouterCall:
    """The sampling fields ``QueryRun.sample`` reads, for a router's own model call."""

    model: str
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: tuple[str, ...] = ()
    api: str = "completion"
    seed: int = 0


class RouterModels:
    """A router's access to the network's models: cached, rate-limited and counted under its gate."""

    def __init__(self, ctx: QueryRun, gate_name: str):
        self._ctx, self._gate = ctx, gate_name

    async def complete(self, model: str, prompt: str, *, samples: int = 1, temperature: float = 0.0,
                       max_tokens: int = 16, stop: tuple[str, ...] | list[str] = (), top_p: float = 1.0,
                       api: str = "completion", seed: int = 0) -> list[str]:
        """``samples`` completions of ``prompt`` from the network's model ``model``."""
        self._ctx.engine.ensure_model(model)
        call = _RouterCall(model, temperature, top_p, max_tokens, tuple(stop), api, seed)
        return await self._ctx.sample(self._gate, call, prompt, samples, role="route")


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
        self._given = given
        self._key_turns: dict[str, list[asyncio.Future]] = {}  # prompt key -> queries waiting for their turn
        self._writer: GroupCommit | None = None
        self._plans: dict[int, tuple[Network, bool, list[tuple[str, Any, tuple[str, ...]]]]] = {}
        self.params: dict[int, tuple] = {}  # per node spec, its sampling parameters (see QueryRun.sample)
        self.answers: dict[tuple, tuple] = {}  # (id(answer spec), choices, text) -> (spec, answer): QueryRun.extract
        self.run_id = secrets.token_hex(8)   # kept across resumes of one output folder (set by the run)
        self.session = secrets.token_hex(8)  # this process: the samples it paid for
        self.keep_text = False               # store each sample's raw completion in the trace
        self.routers: dict[int, Any] = {}
        base = None
        if network.source:
            from pathlib import Path

            base = Path(network.source).resolve().parent
        self._router_base = base

    def ensure_model(self, name: str) -> None:
        """Make model ``name`` callable even if no node uses it (a router may call it)."""
        if name not in self.models:
            if name not in self.network.spec.models:
                raise LlmnetError(f"unknown model '{name}' (declared: {', '.join(sorted(self.network.spec.models))})")
            spec = self.network.spec.models[name]
            self.models[name] = Limited(self._given.get(name) or make_backend(name, spec), self.budget)

    def router(self, spec: Any) -> Any:
        key = id(spec)
        if key not in self.routers:
            self.routers[key] = build_router(spec, self._router_base)
        return self.routers[key]

    async def samples(self, model: str, request: Request, usage: Usage, payer: str = "") -> list[Sample]:
        """K samples for ``request`` (n = K), from the cache where possible, else paid for.

        What it took (calls, attempts, tokens, dollars) is added to ``usage``, failures included.
        Fresh samples go to the cache's write-behind group commits (``llmnet.execute.commits``):
        usable at once, committed off the loop, and nothing that depends on them (another
        process's claim, a result line) becomes visible before they are on disk.
        ``payer`` (query and node) marks the samples paid here, so that a resumed run books the
        samples its killed process paid for as paid, not as cache hits (see ``_book``).
        """
        limited = self.models[model]
        n = request.n
        usage.samples += n
        cache = self.cache
        if cache is None:
            return await self._fetch_runs(limited, request, [(request.seed, n)], None, usage)
        key = request_key(limited.backend.cache_identity(request), request)
        seeds = range(request.seed, request.seed + n)
        writer = self._writer or self._writer_for()
        if writer is not None:
            if writer.error is not None:
                raise writer.error
            row = writer.row_at_hand(key, seeds)
            if row is not None and row[4].endswith(self.session):  # paid by this process (as _book): a hit
                samples = cache.decode(row[3])
                hit_p = hit_c = 0
                for sample in samples:
                    hit_p += sample.prompt_tokens
                    hit_c += sample.completion_tokens
                _add_hits(usage, limited, n, hit_p, hit_c)
                return list(samples)
            rows = writer.at_hand(key, seeds)
            if rows is not None:  # every sample already here: nothing to pay, so no turn and no claim
                have = self._book(rows, payer, limited, usage)
                return [have[s] for s in seeds]
        turns = self._key_turns  # queries of this process on the same prompt take turns: a sample is never paid twice
        waiting = turns.get(key)
        if waiting is None:
            turns[key] = []  # nobody else is on this prompt: no lock object, no wait
        else:
            await self._turn(key, waiting)
        try:
            if writer is not None:
                if writer.error is not None:
                    raise writer.error
                if writer.backlogged:
                    await writer.wait()
            claimed = cache.claim(key)
            while not claimed:  # another process is paying for this key: wait for its rows
                await asyncio.sleep(CLAIM_POLL_S)
                claimed = cache.claim(key)
            try:
                if writer is None:  # another store (a Ray worker's proxy to the driver's cache)
                    rows = cache.get_paid(key, seeds)
                elif key in writer.pending:  # put moments ago, not yet committed
                    pend = writer.rows_of(key)
                    if all(s in pend for s in seeds):  # nothing to read
                        rows = {s: pend[s] for s in seeds}
                    elif claimed == CLAIMED_NEW:  # the file cannot hold more of it
                        rows = {s: pend[s] for s in seeds if s in pend}
                    else:
                        rows = await writer.lookup(key, seeds)
                elif claimed == CLAIMED_NEW:  # never in the file: nothing to read
                    rows = {}
                elif claimed == CLAIMED or ((rows := cache.known_rows(key, seeds)) is None
                                            and (rows := writer.committed_rows(key, seeds)) is None):
                    rows = await writer.lookup(key, seeds)  # read with the turn's other lookups
                if not rows:  # the usual cold case: one call for all of them
                    return await self._fetch_runs(limited, request, [(request.seed, n)], key, usage,
                                                  f"{self.run_id}\x1f{payer}\x1f{self.session}")
                have = self._book(rows, payer, limited, usage)
                if len(have) < n:
                    missing = [s for s in seeds if s not in have]
                    fresh = await self._fetch_runs(limited, request, _contiguous(missing), key, usage,
                                                   f"{self.run_id}\x1f{payer}\x1f{self.session}")
                    have.update(zip(missing, fresh))
                return [have[s] for s in seeds]
            finally:
                if writer is not None:
                    writer.release(key)  # once its fresh samples are committed
                else:
                    cache.release(key)
        finally:
            self._next_turn(key)

    async def _turn(self, key: str, waiting: list[asyncio.Future]) -> None:
        """Until the queries ahead on ``key`` are done (first come, first served)."""
        turn = asyncio.get_running_loop().create_future()
        waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given the turn, then cancelled: hand it on
                self._next_turn(key)
            raise

    def _next_turn(self, key: str) -> None:
        """The next query waiting on ``key`` goes (one cancelled while waiting is skipped)."""
        waiting = self._key_turns[key]
        while waiting:
            turn = waiting.pop(0)
            if not turn.done():
                turn.set_result(None)
                return
        del self._key_turns[key]

    def _writer_for(self) -> GroupCommit | None:
        if self._writer is None and isinstance(self.cache, SampleCache):
            self._writer = GroupCommit(self.cache)
        return self._writer

    def share(self, other: "Engine") -> None:
        """Use ``other``'s backends, limits, cache writer and per-prompt locks: engines over one cache
        in one process then see each other's fresh samples (never paying twice for one) and
        ``other.aclose()`` commits what all of them put."""
        if other.cache is not self.cache:
            raise LlmnetError("engines share a writer only over the same cache")
        self.models, self.budget = other.models, other.budget
        self._key_turns = other._key_turns
        self._writer = other._writer_for()

    async def committed(self) -> None:
        """Until every sample paid so far is in the cache (at once without one); raises the
        ``CacheError`` of a failed commit."""
        if self._writer is not None:
            await self._writer.flushed()

    def after_commit(self, fn: Any) -> None:
        """Run ``fn`` once every sample paid so far is in the cache (at once without a cache)."""
        if self._writer is None:
            fn()
        else:
            self._writer.after_commit(fn)

    def _book(self, rows: dict[int, Any], payer: str, limited: Limited, usage: Usage) -> dict[int, Sample]:
        """Add cached samples to ``usage``: as paid when this run's earlier (killed) process paid for
        them for this very query and node, so the record equals an uninterrupted run's; else as hits."""
        session, mine = self.session, None
        have = {}
        hits = hit_p = hit_c = paid_p = paid_c = 0
        for seed, (sample, paid_by, calls, attempts) in rows.items():
            have[seed] = sample
            if not payer or paid_by.endswith(session):  # paid by this process (the usual case): a hit
                earlier = False
            else:
                if mine is None:
                    mine = f"{self.run_id}\x1f{payer}\x1f"
                earlier = paid_by.startswith(mine)
            if earlier:
                usage.calls += calls
                usage.attempts += attempts
                paid_p += sample.prompt_tokens
                paid_c += sample.completion_tokens
            else:
                hits += 1
                hit_p += sample.prompt_tokens
                hit_c += sample.completion_tokens
        _add_hits(usage, limited, hits, hit_p, hit_c)
        if paid_p or paid_c:
            usage.prompt_tokens += paid_p
            usage.completion_tokens += paid_c
            usage.cost_usd += price(limited.spec, paid_p, paid_c)
        return have

    async def _fetch_runs(self, limited: Limited, request: Request, runs: list[tuple[int, int]], key: str | None,
                          usage: Usage, paid_by: str = "") -> list[Sample]:
        """The samples of each run (start seed, count), concatenated in order."""
        if not limited.backend.supports_n and (len(runs) > 1 or runs[0][1] > 1):
            runs = [(s, 1) for start, n in runs for s in range(start, start + n)]  # one call per sample
        if len(runs) == 1:  # the common case: no tasks to create
            return await self._fetch(limited, request, runs[0][0], runs[0][1], key, usage, paid_by)
        results = await asyncio.gather(*(self._fetch(limited, request, start, n, key, usage, paid_by) for start, n in runs),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return [s for r in results for s in r]

    async def _fetch(self, limited: Limited, request: Request, start: int, n: int, key: str | None,
                     usage: Usage, paid_by: str = "") -> list[Sample]:
        got: list[Sample] = []
        for _ in range(MAX_REASKS):
            need = n - len(got)
            if need == 0:
                break
            seed = start + len(got)
            sub = request if seed == request.seed and need == request.n else _resized(request, need, seed)
            try:
                attempted = await limited.call(sub)
            except BackendError as exc:
                usage.attempts += getattr(exc, "attempts", 1)
                usage.errors += 1
                raise
            fresh = attempted.completion.samples
            if len(fresh) > need:
                fresh = fresh[:need]
                p = sum(s.prompt_tokens for s in fresh)
                c = sum(s.completion_tokens for s in fresh)
            else:
                p, c = attempted.prompt_tokens, attempted.completion_tokens
            usage.calls += 1
            usage.attempts += attempted.attempts
            usage.latency_s += attempted.latency_s
            usage.prompt_tokens += p
            usage.completion_tokens += c
            usage.cost_usd += price(limited.spec, p, c)
            usage.server_cached_tokens += sum(s.cached_tokens for s in fresh)
            if key is not None and fresh:
                if self._writer is not None:  # stored before anything else sees them (see ``samples``)
                    self._writer.put_call(key, seed, fresh, paid_by, 1, attempted.attempts)
                else:  # another store (a Ray worker's proxy to the driver's cache): its own writes
                    self.cache.put_many(key, [(seed + j, s) for j, s in enumerate(fresh)], paid_by, 1,
                                        attempted.attempts)
            got.extend(fresh)
        if len(got) < n:
            raise BackendError(f"model '{limited.backend.name}' returned {len(got)} of {n} samples after "
                               f"{MAX_REASKS} requests")
        return got

    def _plan(self, network: Network) -> tuple[bool, list[tuple[str, Any, tuple[str, ...]]]]:
        """Per network, once: is it a chain, and each node's (name, spec, inputs) in order."""
        plan = self._plans.get(id(network))
        if plan is None or plan[0] is not network:
            g = network.graph
            chain = all(d <= 1 for _, d in g.in_degree) and all(d <= 1 for _, d in g.out_degree)
            steps = [(name, network.spec.nodes[name], tuple(getattr(network.spec.nodes[name], "inputs", ())))
                     for name in network.order]
            plan = self._plans[id(network)] = (network, chain, steps)
        return plan[1], plan[2]

    async def run_graph(self, network: Network, ctx: QueryRun) -> Answer:
        outputs: dict[str, Any] = {}
        chain, steps = self._plan(network)

        async def run_node(name: str, spec: Any, inputs: tuple[str, ...]) -> Any:
            values = [outputs[i] for i in inputs]
            if spec.kind == "gate":
                return await gate.run(ctx, name, spec, values, self.router(spec.router), network.branches[name])
            started = time.perf_counter()
            result = await RUNNERS[spec.kind](ctx, name, spec, values)
            entry = ctx.trace.get(ctx.prefix + name)
            if entry is not None and "usage" in entry:  # the node's wall time, not its calls' summed times
                entry["usage"].latency_s = time.perf_counter() - started
            return result

        if chain:
            for name, spec, inputs in steps:
                outputs[name] = await run_node(name, spec, inputs)
        else:
            tasks: dict[str, asyncio.Task] = {}

            async def after_inputs(name: str, spec: Any, inputs: tuple[str, ...]) -> Any:
                for inp in inputs:
                    await tasks[inp]
                outputs[name] = await run_node(name, spec, inputs)
                return outputs[name]

            for name, spec, inputs in steps:
                tasks[name] = asyncio.ensure_future(after_inputs(name, spec, inputs))
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
        except (BudgetExceeded, CacheError):  # the run stops: a budget, or a cache it cannot trust
            raise
        except (LlmnetError, ValueError) as exc:
            record.update(answer=None, correct=None, error=f"{type(exc).__name__}: {exc}")  # not a wrong answer
        usage = ctx.total_usage() if ctx else Usage()
        record.update(truth=query.answer, calls=usage.calls, attempts=usage.attempts, samples=usage.samples,
                      cache_hits=usage.cache_hits, prompt_tokens=usage.prompt_tokens,
                      completion_tokens=usage.completion_tokens, cost_usd=round(usage.cost_usd, 10),
                      cached_tokens=usage.cached_tokens, cached_cost_usd=round(usage.cached_cost_usd, 10),
                      latency_s=round(time.perf_counter() - started, 6),
                      trace=plain_trace(ctx.trace if ctx else {}))
        return record

    async def aclose(self) -> None:
        """Close the backends and wait for the last cache commits (also after a cancellation); raises the
        ``CacheError`` of a commit that failed."""
        try:
            if self._writer is not None:
                await asyncio.shield(self._writer.aclose())
        finally:
            for limited in self.models.values():
                await limited.backend.aclose()


def _add_hits(usage: Usage, limited: Limited, hits: int, prompt_tokens: int, completion_tokens: int) -> None:
    """Cache hits into ``usage``: the samples, and what they cost when they were paid for."""
    usage.cache_hits += hits
    if prompt_tokens or completion_tokens:
        usage.cached_tokens += prompt_tokens + completion_tokens
        usage.cached_cost_usd += price(limited.spec, prompt_tokens, completion_tokens)


def query_fingerprint(query: Query) -> str:
    """A short hash of what a query asks, so a resumed run never reuses another query's result."""
    return hashlib.blake2b(f"{query.question}\x1f{query.answer}".encode("utf-8", "surrogatepass"),
                           digest_size=8).hexdigest()


def plain_trace(trace: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A query's trace as JSON-ready data (each node's ``Usage`` as a dict)."""
    return {node: {k: (v.to_dict() if isinstance(v, Usage) else v) for k, v in entry.items()}
            for node, entry in trace.items()}


def _resized(request: Request, n: int, seed: int) -> Request:
    """``request`` asking for ``n`` samples from ``seed`` (``dataclasses.replace`` without its cost)."""
    return Request(request.prompt, n, seed, request.temperature, request.top_p, request.max_tokens, request.stop,
                   request.api, request.system, request.choices, request.role, request.query, request.candidate,
                   request.n_candidates)


def _contiguous(seeds: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seeds:
        if runs and runs[-1][0] + runs[-1][1] == s:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((s, 1))
    return runs
