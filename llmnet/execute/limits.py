"""Per-model limits around a backend: in-flight cap, request and token budgets, timeout,
retries with exponential backoff and jitter (honouring Retry-After), and a cost budget.

Budgets are sliding windows (``Window``): at most 0.1 s worth of the request rate is sent
in any 0.1 s, and at most one second's worth of the token rate is charged in any second,
from the very first window on (a bucket that starts full would let the first window send
twice its share). The token window is charged the estimate up front (prompt estimate +
max_tokens x n) and corrected from the real usage afterwards: unused tokens are given
back, overruns charged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass

from llmnet.backends.base import Backend, Completion, Request, estimate_tokens
from llmnet.errors import BackendError, BackendTimeout, BudgetExceeded
from llmnet.execute.usage import price


class Window:
    """At most ``capacity`` units charged in any ``period`` seconds: a sliding-window log.

    ``capacity`` = ``rate_per_min`` / 60 x ``period``, so any window of k periods carries
    at most k periods' worth of the rate, including the first (nothing is pre-charged
    and nothing starts full). Waiters are served in arrival order.
    """

    def __init__(self, rate_per_min: float, period: float = 1.0, clock=time.monotonic, sleep=asyncio.sleep):
        self.period = period
        self.capacity = max(1.0, rate_per_min / 60.0 * period)
        self.used = 0.0
        self._log: deque[list] = deque()  # [time charged, amount] in time order
        self._turn = asyncio.Lock()
        self._clock, self._sleep = clock, sleep
        self._deadlines: dict[asyncio.Task, float] = {}  # calls in flight and when they time out
        self._expired: set[asyncio.Task] = set()
        self._watchdog: asyncio.TimerHandle | None = None

    def _expire(self, now: float) -> None:
        log, horizon = self._log, now - self.period
        while log and log[0][0] <= horizon:
            self.used -= log.popleft()[1]
        if not log:
            self.used = 0.0  # no float drift across many charges

    async def take(self, amount: float) -> list:
        """Wait until ``amount`` fits (more than the capacity is charged as the capacity), then charge it.

        Returns the charge, for ``correct``.
        """
        amount = min(max(amount, 0.0), self.capacity)
        async with self._turn:
            while True:
                now = self._clock()
                self._expire(now)
                excess = self.used + amount - self.capacity
                if excess <= 1e-9:
                    break
                freed = 0.0
                for t, a in self._log:  # wait until the oldest charges that make room have left the window
                    freed += a
                    if freed >= excess - 1e-9:
                        break
                await self._sleep(max(t + self.period - now, 1e-4))
            entry = [now, amount]
            self._log.append(entry)
            self.used += amount
            return entry

    def correct(self, entry: list, actual: float) -> None:
        """Make a charge ``actual`` instead of its estimate (never blocks); an overrun is charged now."""
        now = self._clock()
        self._expire(now)
        actual = max(actual, 0.0)
        if self._log and entry[0] > now - self.period and entry[0] >= self._log[0][0]:
            self.used += actual - entry[1]
            entry[1] = actual
        elif actual > entry[1]:  # the charge already left the window: the overrun counts from now
            self._log.append([now, actual - entry[1]])
            self.used += actual - entry[1]


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
    prompt_tokens: int = 0      # summed over the completion's samples
    completion_tokens: int = 0


class Limited:
    """A backend behind its model's limits. ``call`` is the only way the executor reaches it."""

    def __init__(self, backend: Backend, budget: CostBudget, clock=time.monotonic, sleep=asyncio.sleep):
        self.backend = backend
        self.spec = backend.spec
        limits = self.spec.limits
        self.semaphore = asyncio.Semaphore(limits.concurrency)
        # requests: 0.1 s windows, so bursts stay short; tokens: one-second windows, so a large request fits
        self.requests = Window(limits.rpm, 0.1, clock, sleep) if limits.rpm else None
        self.tokens = Window(limits.tpm, 1.0, clock, sleep) if limits.tpm else None
        self.budget = budget
        self.in_flight = 0
        self.max_in_flight = 0
        self._clock, self._sleep = clock, sleep
        self._deadlines: dict[asyncio.Task, float] = {}  # calls in flight and when they time out
        self._expired: set[asyncio.Task] = set()
        self._watchdog: asyncio.TimerHandle | None = None

    async def _complete(self, request: Request, timeout: float) -> Completion:
        """``backend.complete`` within ``timeout`` seconds.

        One watchdog per model checks the calls in flight a few times per timeout period,
        instead of an ``asyncio.timeout`` per call: each of those leaves a timer in the
        loop's heap until its deadline, tens of MB on a fast run of 100k queries.
        """
        task = asyncio.current_task()
        cancelling = task.cancelling()
        self._deadlines[task] = self._clock() + timeout
        if self._watchdog is None:
            period = min(max(timeout / 20, 0.01), 1.0)  # a call is cut within 5% (at most 1 s) of its timeout
            self._watchdog = asyncio.get_running_loop().call_later(period, self._watch, period)
        try:
            return await self.backend.complete(request)
        except asyncio.CancelledError:
            if task in self._expired and task.uncancel() <= cancelling:  # ours, not the caller's
                raise BackendTimeout(f"no answer within {timeout:g}s") from None
            raise
        except TimeoutError:  # the backend's own
            raise BackendTimeout(f"no answer within {timeout:g}s") from None
        finally:
            del self._deadlines[task]
            self._expired.discard(task)

    def _watch(self, period: float) -> None:
        now = self._clock()
        for task, deadline in self._deadlines.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._watchdog = (asyncio.get_running_loop().call_later(period, self._watch, period)
                          if self._deadlines else None)

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
            charged = None
            try:
                async with self.semaphore:
                    if self.tokens:
                        charged = await self.tokens.take(est_tokens)
                    if self.requests:  # last, so that nothing waits between this charge and the send
                        await self.requests.take(1)
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        completion = await self._complete(request, limits.timeout)
                    finally:
                        self.in_flight -= 1
            except BackendError as exc:
                self.budget.settle(est_cost, 0.0)
                if charged is not None:
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
            p = c = 0
            for s in completion.samples:
                p += s.prompt_tokens
                c += s.completion_tokens
            self.budget.settle(est_cost, price(self.spec, p, c))
            if charged is not None:
                self.tokens.correct(charged, p + c)
            return Attempted(completion, attempts, self._clock() - started, p, c)
