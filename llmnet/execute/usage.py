"""Usage accounting: calls, attempts, tokens, dollars, latency and cache hits.

One ``Usage`` per call is added into the totals of its node, model and query and the
run, so every breakdown sums to the same total. (Plain slots and explicit loops: this
sits on the executor's hot path.)
"""

from __future__ import annotations

from typing import Any

FIELDS = ("calls", "attempts", "samples", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd",
          "latency_s", "errors", "cached_tokens", "cached_cost_usd", "server_cached_tokens")


class Usage:
    """calls: successful backend calls; attempts: every try, retries included; samples: used
    (fresh + cached); cache_hits: samples not paid for; tokens and dollars: paid only;
    latency_s: a node's wall time in one query (summaries: the mean over queries); errors: calls that failed for good;
    cached_tokens / cached_cost_usd: what the cached samples cost when they were paid for
    (so paid + cached is the run's cost without a cache, e.g. for SMART's accounting);
    server_cached_tokens: paid prompt tokens the server's prefix cache served, as the server
    reported them (``usage.prompt_tokens_details.cached_tokens``; 0 when it does not say)."""

    __slots__ = FIELDS

    def __init__(self, calls: int = 0, attempts: int = 0, samples: int = 0, cache_hits: int = 0,
                 prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0, latency_s: float = 0.0,
                 errors: int = 0, cached_tokens: int = 0, cached_cost_usd: float = 0.0,
                 server_cached_tokens: int = 0) -> None:
        self.calls, self.attempts, self.samples, self.cache_hits = calls, attempts, samples, cache_hits
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        self.cost_usd, self.latency_s, self.errors = cost_usd, latency_s, errors
        self.cached_tokens, self.cached_cost_usd = cached_tokens, cached_cost_usd
        self.server_cached_tokens = server_cached_tokens

    def add(self, other: "Usage") -> None:
        self.calls += other.calls
        self.attempts += other.attempts
        self.samples += other.samples
        self.cache_hits += other.cache_hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.latency_s += other.latency_s
        self.errors += other.errors
        self.cached_tokens += other.cached_tokens
        self.cached_cost_usd += other.cached_cost_usd
        self.server_cached_tokens += other.server_cached_tokens

    def to_dict(self) -> dict[str, Any]:
        """The fields in ``FIELDS`` order, dollars rounded to 1e-10 and seconds to 1e-6."""
        return {"calls": self.calls, "attempts": self.attempts, "samples": self.samples, "cache_hits": self.cache_hits,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 10), "latency_s": round(self.latency_s, 6), "errors": self.errors,
                "cached_tokens": self.cached_tokens, "cached_cost_usd": round(self.cached_cost_usd, 10),
                "server_cached_tokens": self.server_cached_tokens}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Usage({', '.join(f'{k}={v}' for k, v in self.to_dict().items() if v)})"


def price(spec, prompt_tokens: int, completion_tokens: int) -> float:
    """Dollars for tokens at the model's price per 1M tokens."""
    return (prompt_tokens * spec.price.input + completion_tokens * spec.price.output) / 1e6
