"""Scaling experiments on real networks: sample pools through the executor, then exact curves and fits.

From a Vote network (a generator feeding a vote) or a Filter-Vote network (a generator
feeding a judge / filter / filter_vote), draw M generations per query — and, for
Filter-Vote, one judge verdict per generation — once. The per-sample cache means a
larger M later pays only for the new samples. Vote accuracy at every K is then computed
exactly from the pools (``llmnet.scaling.vote``), without more model calls, and fitted
(``llmnet.scaling.laws``): ``llmnet scale`` is ``run_scaling``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llmnet.errors import SpecError
from llmnet.execute import RunConfig, run_network
from llmnet.network.graph import Network, compile_network
from llmnet.scaling.vote import Pool
from llmnet.tasks.query import Query

MAX_K = 100_000

JUDGE_KINDS = ("judge", "filter", "filter_vote")


def pool_network(network: Network, m: int) -> tuple[Network, str, str | None]:
    """A network drawing M samples from ``network``'s generator (+ its judge): (net, gen, judge)."""
    spec = network.spec
    gens = [n for n in network.order if spec.nodes[n].kind == "generator"]
    if len(gens) != 1:
        raise SpecError(f"scaling needs exactly one generator at the top level of '{network.name}' "
                        f"(found {len(gens)}: {', '.join(gens) or 'none'})")
    gen = gens[0]
    judges = [n for n in network.order if spec.nodes[n].kind in JUDGE_KINDS and gen in spec.nodes[n].inputs]
    nodes = {gen: spec.nodes[gen].model_copy(update={"samples": m})}
    judge = judges[0] if judges else None
    if judge:
        nodes[judge] = spec.nodes[judge].model_copy(update={"kind": "judge"}) if spec.nodes[judge].kind == "judge" \
            else _as_judge(spec.nodes[judge])
    new = spec.model_copy(update={"nodes": nodes, "output": judge or gen, "subgraphs": {}})
    return compile_network(new, source=network.source), gen, judge


def _as_judge(node):
    from llmnet.network.spec import JudgeNode

    fields = {k: v for k, v in node.model_dump().items() if k in JudgeNode.model_fields and k != "kind"}
    return JudgeNode(kind="judge", **fields)


def draw_pools(network: Network, queries: list[Query], m: int, cache_path: Path | None,
               progress: bool = False, concurrency: int = 64) -> tuple[list[Pool], dict]:
    """M samples per query (answers, and verdicts when the network has a judge); and the run summary."""
    net, gen, judge = pool_network(network, m)
    report = run_network(net, queries, RunConfig(cache_path=cache_path, progress=progress, concurrency=concurrency))
    pools = []
    truth = {q.id: q.answer for q in queries}
    for rec in report.results:
        if rec["error"]:
            continue
        trace = rec["trace"]
        answers = tuple(trace[gen]["answers"])
        verdicts = tuple(trace[judge]["verdicts"]) if judge else None
        pools.append(Pool(rec["id"], answers, str(truth[rec["id"]]), verdicts))
    return pools, report.summary


def parse_ks(text: str) -> list[int]:
    """``"1,3,5,...,99"`` (an arithmetic progression), ``"1-50"``, ``"1,2,5,10"`` -> sorted unique Ks."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    out: set[int] = set()
    try:
        for i, part in enumerate(parts):
            if part == "...":
                if i < 2 or i + 1 >= len(parts):
                    raise ValueError("'...' needs two values before it and one after (e.g. 1,3,5,...,99)")
                a, b, end = int(parts[i - 2]), int(parts[i - 1]), int(parts[i + 1])
                if b <= a:
                    raise ValueError("the values before '...' must increase")
                out.update(range(b, end + 1, b - a))
            elif re.fullmatch(r"\d+-\d+", part):
                lo, hi = map(int, part.split("-"))
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError as exc:
        raise SpecError(f"--k '{text}': {exc}") from None
    if not out or min(out) < 1 or max(out) > MAX_K:
        raise SpecError(f"--k '{text}': give Ks between 1 and {MAX_K}")
    return sorted(out)


def run_scaling(network: Network, queries: list[Query], ks: list[int], m: int, out_dir: Path,
                cache_path: Path | None = None, fit_max_k: int | None = None, buckets: str = "easy_hard",
                progress: bool = False) -> dict[str, Any]:
    """Pools of M samples, exact accuracy at every K, fits; writes scaling.json and scaling.png."""
    from llmnet.scaling.report import scaling_report
    from llmnet.scaling.plots import plot_scaling

    _, _, judge = pool_network(network, m)
    method = "filter_vote" if judge else "vote"
    pools, summary = draw_pools(network, queries, m, cache_path, progress)
    if len(pools) < 2:
        raise SpecError(f"only {len(pools)} queries ran without errors; scaling needs at least 2")
    report = scaling_report(pools, ks, method=method, buckets=buckets, fit_max_k=fit_max_k, pool_size=m)
    data = report.to_dict()
    data.update(network=network.name, method=method, queries=len(pools), failed_queries=len(queries) - len(pools),
                pool_size=m, samples_used=summary["samples"], calls=summary["calls"], cache_hits=summary["cache_hits"], cost_usd=summary["cost_usd"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scaling.json").write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    plot_scaling(report, out_dir / "scaling.png")
    return data


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")
