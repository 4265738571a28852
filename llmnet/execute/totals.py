"""A run's summary, accumulated one result record at a time (constant memory).

A query that ended in error is not a wrong answer: ``accuracy`` is over the answered
(graded) queries, with a 95% Wilson interval; ``errors`` counts the failed queries and
``errors_by_type`` groups them (count and first example of each type); ``accuracy_all``
counts every failed query that has a truth as wrong, for readers who want one number.
"""

from __future__ import annotations

import math
from typing import Any

from llmnet.execute.usage import Usage


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """The Wilson score interval for a binomial proportion (95% by default); None when n = 0.

    Unlike the normal-approximation interval it stays inside [0, 1] and covers close to
    95% even at accuracies near 0 or 1 and for small n (Wilson 1927; Brown, Cai and
    DasGupta 2001).
    """
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def error_type(message: str) -> str:
    """``"BackendUnavailable: connection refused"`` -> ``"BackendUnavailable"``."""
    head, sep, _ = message.partition(":")
    return head.strip() if sep and head.strip().isidentifier() else "Error"


def _mean_latency(usage: Usage, runs: int) -> dict[str, Any]:
    """A breakdown's usage with ``latency_s`` as the mean wall time of one run of the node (one
    query's time in it): queries run concurrently, so a sum over them says nothing about time."""
    d = usage.to_dict()
    d["latency_s"] = round(usage.latency_s / max(runs, 1), 6)
    return d


class Totals:
    """Summary statistics accumulated one result record at a time (constant memory)."""

    def __init__(self) -> None:
        self.queries = self.graded = self.correct = self.errors = self.errors_with_truth = 0
        self.total = Usage()
        self.per_node: dict[str, Usage] = {}
        self.per_model: dict[str, Usage] = {}
        self.branches: dict[str, dict[str, int]] = {}
        self.errors_by_type: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, int] = {}        # queries that ran each node (for mean latencies)
        self.model_runs: dict[str, int] = {}  # node runs per model
        self.programs = self.weak_passes = 0    # sandboxed programs; passes judged in-child

    def add(self, rec: dict[str, Any]) -> None:
        self.queries += 1
        error = rec.get("error")
        if error is not None:
            self.errors += 1
            self.errors_with_truth += rec.get("truth") is not None
            kind = self.errors_by_type.setdefault(error_type(error), {"count": 0, "example": error,
                                                                      "example_id": rec.get("id")})
            kind["count"] += 1
        elif rec.get("correct") is not None:
            self.graded += 1
            self.correct += bool(rec["correct"])
        for node, entry in rec.get("trace", {}).items():
            u = entry.get("usage")
            if u is not None:
                self.runs[node] = self.runs.get(node, 0) + 1
                self.model_runs[entry["model"]] = self.model_runs.get(entry["model"], 0) + 1
                usage = Usage(**u)  # once, added to its three buckets
                per_node, per_model = self.per_node.get(node), self.per_model.get(entry["model"])
                if per_node is None:  # (not setdefault: it would make a Usage every time)
                    per_node = self.per_node[node] = Usage()
                if per_model is None:
                    per_model = self.per_model[entry["model"]] = Usage()
                per_node.add(usage)
                per_model.add(usage)
                self.total.add(usage)
            for status in entry.get("sandbox", ()):
                self.programs += 1
                self.weak_passes += status == "passed (weak)"
            if "branch" in entry:
                counts = self.branches.setdefault(node, {})
                counts[entry["branch"]] = counts.get(entry["branch"], 0) + 1

    def summary(self, network_name: str, **extra: Any) -> dict[str, Any]:
        t = self.total
        ci = wilson_interval(self.correct, self.graded)
        graded_all = self.graded + self.errors_with_truth
        return {
            "network": network_name,
            "queries": self.queries,
            "accuracy": round(self.correct / self.graded, 6) if self.graded else None,
            "accuracy_ci95": [round(ci[0], 6), round(ci[1], 6)] if ci else None,
            "accuracy_all": round(self.correct / graded_all, 6) if graded_all else None,
            "correct": self.correct,
            "graded": self.graded,
            "errors": self.errors,
            "errors_by_type": dict(sorted(self.errors_by_type.items(), key=lambda kv: -kv[1]["count"])),
            "calls": t.calls,
            "attempts": t.attempts,
            "retries": t.attempts - t.calls - t.errors,
            "samples": t.samples,
            "cache_hits": t.cache_hits,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "cost_usd": round(t.cost_usd, 10),
            "cached_tokens": t.cached_tokens,
            "cached_cost_usd": round(t.cached_cost_usd, 10),
            "server_cached_tokens": t.server_cached_tokens,
            "per_node": {k: _mean_latency(v, self.runs.get(k, 1)) for k, v in sorted(self.per_node.items())},
            "per_model": {k: _mean_latency(v, self.model_runs.get(k, 1))
                          for k, v in sorted(self.per_model.items())},
            "branches": self.branches,
            **({"sandbox": {"programs": self.programs, "weak_passes": self.weak_passes}}
               if self.programs else {}),
            **extra,
        }
