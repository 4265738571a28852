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
               progress: bool = False, concurrency: int = 64, ray: Any = None) -> tuple[list[Pool], dict]:
    """M samples per query (answers, and verdicts when the network has a judge); and the run summary."""
    net, gen, judge = pool_network(network, m)
    report = run_network(net, queries, RunConfig(cache_path=cache_path, progress=progress, concurrency=concurrency,
                                                 ray=ray))
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
                progress: bool = False, ray: Any = None) -> dict[str, Any]:
    """Pools of M samples, exact accuracy at every K, fits; writes scaling.json and scaling.png.

    ``ray``: draw the pools on Ray workers (see ``llmnet.execute.cluster``)."""
    _, _, judge = pool_network(network, m)
    method = "filter_vote" if judge else "vote"
    pools, summary = draw_pools(network, queries, m, cache_path, progress, ray=ray)
    if len(pools) < 2:
        raise SpecError(f"only {len(pools)} queries ran without errors; scaling needs at least 2")
    return analyse_pools(pools, ks, out_dir, method=method, fit_max_k=fit_max_k, buckets=buckets, pool_size=m,
                         extra=dict(network=network.name, queries=len(pools), failed_queries=len(queries) - len(pools),
                                    samples_used=summary["samples"], calls=summary["calls"],
                                    cache_hits=summary["cache_hits"], cost_usd=summary["cost_usd"]))


def analyse_pools(pools: list[Pool], ks: list[int], out_dir: Path, method: str | None = None,
                  fit_max_k: int | None = None, buckets: str = "easy_hard", pool_size: int | None = None,
                  extra: dict | None = None) -> dict[str, Any]:
    """Exact curves, shapes, K*, fits of pools a user already has (``llmnet scale --pools``,
    :func:`llmnet.scaling.pools.read_pools`): writes ``scaling.json`` and ``scaling.png``
    in ``out_dir`` and returns the JSON. ``method`` defaults to Filter-Vote when every
    pool has verdicts, else Vote."""
    from llmnet.scaling.plots import plot_scaling
    from llmnet.scaling.report import scaling_report

    if len(pools) < 2:
        raise SpecError(f"{len(pools)} pool(s): scaling needs at least 2 queries")
    if method is None:
        method = "filter_vote" if all(p.verdicts is not None for p in pools) else "vote"
    if method == "filter_vote" and any(p.verdicts is None for p in pools):
        raise SpecError("filter_vote needs 'verdicts' on every pool")
    if fit_max_k is not None and fit_max_k < min(ks):
        raise SpecError(f"--fit-max-k {fit_max_k} is below the smallest K ({min(ks)}): nothing to fit on")
    report = scaling_report(pools, ks, method=method, buckets=buckets, fit_max_k=fit_max_k, pool_size=pool_size)
    data = report.to_dict()
    data.update({"queries": len(pools), "pool_size": report.pool_size, **(extra or {})})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scaling.json").write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    plot_scaling(report, out_dir / "scaling.png")
    return data


def summary_lines(data: dict) -> list[str]:
    """One line per group of a ``scaling.json``: shape, K*, the recommended fit and every
    fit's mean absolute error against the exact curve."""
    ks = data["ks"]
    lines = []
    for name, g in data["groups"].items():
        k = g["k_star"]
        lines.append(f"{name}: {g['n_queries']} queries, {g['shape']}, acc {g['acc'][0]:.4f} (K={ks[0]}) -> "
                     f"{g['acc'][-1]:.4f} (K={ks[-1]}); K* {k['value']} [{k['lo']}, {k['hi']}], argmax {k['argmax']}; "
                     f"recommended {g['recommended']} ({g['fitted_shape']})")
        lines.append("    MAE vs exact over all K: " + ", ".join(
            f"{f} {v['mae_all']:.4f}" for f, v in g["fits"].items()))
    return lines


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")
