"""Per-model limits around a backend: in-flight cap, request and token budgets, timeout,
retries with exponential backoff and jitter (honouring Retry-After), and a cost budget.

Budgets are leaky buckets (``aiolimiter``): requests may burst 0.1 s worth of the rate,
tokens one second's worth (so a large request still fits). The token bucket is charged
the estimate up front (prompt estimate +
max_tokens x n) and corrected from the real usage afterwards: unused tokens are given
back, overruns charged.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from llmnet.backends.base import Backend, Completion, Request, estimate_tokens
from llmnet.errors import BackendError, BackendTimeout, BudgetExceeded
from llmnet.execute.usage import price


class Bucket(AsyncLimiter):
    """A weighted leaky bucket with ``rate_per_min`` and ``burst_s`` seconds' worth of burst."""

    def __init__(self, rate_per_min: float, burst_s: float = 1.0):
        capacity = max(1.0, rate_per_min / 60.0 * burst_s)
        super().__init__(capacity, capacity / (rate_per_min / 60.0))

    async def take(self, amount: float) -> float:
        amount = min(max(amount, 0.0), self.max_rate)
        await self.acquire(amount)
        return amount

    def correct(self, charged: float, actual: float) -> None:
        """Give back what was over-charged, or charge the overrun (never blocks)."""
        self._leak()
        self._level = min(max(self._level + (actual - charged), 0.0), self.max_rate * 4)


class CostBudget:
    """Refuses a call whose estimated cost would take the run past ``max_cost`` dollars."""

    def __init__(self, max_cost: float | None):
        self.max_cost = max_cost
        self.spent = 0.0
        self.reserved = 0.0

    def reserve(self, amount: float) -> None:
        if self.max_cost is not None and self.spent + self.reserved + amount > self.max_cost + 1e-12:
            raise BudgetExceeded(f"--max-cost {self.max_cost:g}: the next call (about ${amount:.6f}) would exceed "
                                 f"it (spent ${self.spent:.6f})")
        self.reserved += amount

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved -= reserved
        self.spent += actual


@dataclass
class Attempted:
    """A completion plus what it took to get it."""

    completion: Completion
    attempts: int
    latency_s: float


class Limited:
    """A backend behind its model's limits. ``call`` is the only way the executor reaches it."""

    def __init__(self, backend: Backend, budget: CostBudget, clock=time.monotonic, sleep=asyncio.sleep):
        self.backend = backend
        self.spec = backend.spec
        limits = self.spec.limits
        self.semaphore = asyncio.Semaphore(limits.concurrency)
        self.requests = Bucket(limits.rpm, burst_s=0.1) if limits.rpm else None  # short bursts: rpm is kept
        self.tokens = Bucket(limits.tpm) if limits.tpm else None
        self.budget = budget
        self.in_flight = 0
        self.max_in_flight = 0
        self._clock, self._sleep = clock, sleep

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        limits = self.spec.limits
        delay = min(limits.max_backoff, limits.backoff * 2**attempt) * (0.5 + random.random() / 2)
        return max(delay, retry_after or 0.0)

    async def call(self, request: Request) -> Attempted:
        limits = self.spec.limits
        est_prompt = estimate_tokens(request.prompt)
        est_tokens = est_prompt + request.max_tokens * request.n
        est_cost = price(self.spec, est_prompt, request.max_tokens * request.n)
        attempts, started = 0, self._clock()
        while True:
            attempts += 1
            self.budget.reserve(est_cost)
            charged = 0.0
            try:
                async with self.semaphore:
                    if self.requests:
                        await self.requests.take(1)
                    if self.tokens:
                        charged = await self.tokens.take(est_tokens)
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        async with asyncio.timeout(limits.timeout):
                            completion = await self.backend.complete(request)
                    except TimeoutError:
                        raise BackendTimeout(f"no answer within {limits.timeout:g}s") from None
                    finally:
                        self.in_flight -= 1
            except BackendError as exc:
                self.budget.settle(est_cost, 0.0)
                if self.tokens and charged:
                    self.tokens.correct(charged, est_prompt)
                if not exc.retryable or attempts > limits.retries:
                    exc.attempts = attempts  # type: ignore[attr-defined]
                    raise
                wait = getattr(exc, "retry_after", None)
                if wait is not None and wait > limits.max_backoff:  # never sleep hours on a server's word
                    capped = type(exc)(f"{exc} (the server asked to wait {wait:g}s before retrying, more than "
                                       f"max_backoff {limits.max_backoff:g}s; raise limits.max_backoff to wait)")
                    capped.attempts = attempts  # type: ignore[attr-defined]
                    raise capped from exc
                await self._sleep(self._backoff(attempts - 1, getattr(exc, "retry_after", None)))
                continue
            except BaseException:
                self.budget.settle(est_cost, 0.0)
                raise
            p = sum(s.prompt_tokens for s in completion.samples)
            c = sum(s.completion_tokens for s in completion.samples)
            self.budget.settle(est_cost, price(self.spec, p, c))
            if self.tokens:
                self.tokens.correct(charged, p + c)
            return Attempted(completion, attempts, self._clock() - started)
