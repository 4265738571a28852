"""Usage accounting: calls, attempts, tokens, dollars, latency and cache hits.

One ``Usage`` per call is added into the totals of its node, model and query and the
run, so every breakdown sums to the same total.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class Usage:
    calls: int = 0            # backend calls that succeeded
    attempts: int = 0         # every try, failed ones and retries included
    samples: int = 0          # samples used (fresh + cached)
    cache_hits: int = 0       # samples served from the cache (not paid)
    prompt_tokens: int = 0    # paid tokens only
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0    # summed wall time of calls
    errors: int = 0

    def add(self, other: "Usage") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cost_usd"] = round(d["cost_usd"], 10)
        d["latency_s"] = round(d["latency_s"], 6)
        return d


def price(spec, prompt_tokens: int, completion_tokens: int) -> float:
    """Dollars for tokens at the model's price per 1M tokens."""
    return (prompt_tokens * spec.price.input + completion_tokens * spec.price.output) / 1e6
