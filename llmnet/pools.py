"""Sample pools for scaling experiments, drawn through the executor and its cache.

From a Vote network (a generator feeding a vote) or a Filter-Vote network (a generator
feeding a judge / filter / filter_vote), draw M generations per query — and, for
Filter-Vote, one judge verdict per generation — once. The per-sample cache means a
larger M later pays only for the new samples. Vote accuracy at every K is then computed
exactly from the pools (``llmnet.stats.vote``), without more model calls.
"""

from __future__ import annotations

from pathlib import Path

from llmnet.errors import SpecError
from llmnet.execute import RunConfig, run_network
from llmnet.graph import Network, compile_network
from llmnet.query import Query
from llmnet.stats.vote import Pool

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
    from llmnet.spec import JudgeNode

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
