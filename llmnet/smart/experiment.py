"""SMART for real: profile candidate models or subgraphs against a reference, through the executor.

Members are names from one network file: a **subgraph** (run as its own network) or a
**model** (the network with every model call switched to it). Items are taken in
dataset order. Before profiling, every member answers the first item once to measure
its cost per item (SMART orders models by cost); that item is the first profiled item.
Then ``llmnet.smart.SmartSession`` decides, check by check, which members to run, and
finally assigns the remaining items (one model, or a mix). Agreement = the member's
final answer equals the reference's (a failed query never agrees).

Cost per item is dollars when any member has a price, else tokens (prompt + completion):
local models are free in dollars but not in compute. Cached samples count at what they
cost when they were paid for, so a re-run reports the same costs as the first run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmnet.errors import LlmnetError, SpecError
from llmnet.execute import RunConfig, run_network
from llmnet.network.graph import Network, compile_network
from llmnet.network.loader import suggest
from llmnet.smart.router import PLAN_FORMAT, PLAN_VERSION
from llmnet.smart.plots import plot_bounds
from llmnet.smart.session import Candidate, SmartResult, SmartSession
from llmnet.tasks.query import Query


def member_network(network: Network, name: str) -> Network:
    """The network that answers as ``name`` (a subgraph, or every call switched to a model)."""
    spec = network.spec
    if name in spec.subgraphs:
        sub = spec.subgraphs[name]
        return compile_network(spec.model_copy(update={"nodes": dict(sub.nodes), "output": sub.output,
                                                       "name": name}), source=network.source)
    if name in spec.models:
        def switch(nodes):
            return {k: n.model_copy(update={"model": name}) if hasattr(n, "model") else n for k, n in nodes.items()}

        subgraphs = {k: v.model_copy(update={"nodes": switch(v.nodes)}) for k, v in spec.subgraphs.items()}
        return compile_network(spec.model_copy(update={"nodes": switch(spec.nodes), "subgraphs": subgraphs,
                                                       "name": name}), source=network.source)
    raise SpecError(f"'{name}' is neither a subgraph nor a model of {network.name}"
                    + suggest(name, [*spec.subgraphs, *spec.models]))


@dataclass
class _Member:
    network: Network
    answers: dict[str, str | None]
    costs: dict[str, float]


class SmartRunner:
    """Runs members on items through the executor (one cache), remembering answers and costs."""

    def __init__(self, network: Network, names: list[str], cache_path: Path | None, measure: str = "auto",
                 backends: dict[str, Any] | None = None):
        self.members = {n: _Member(member_network(network, n), {}, {}) for n in names}
        self.cache_path = cache_path
        self.backends = dict(backends) if backends else None
        priced = any(m.price.input or m.price.output for m in network.spec.models.values())
        self.unit = "usd" if measure == "usd" or (measure == "auto" and priced) else "tokens"

    def run(self, name: str, items: list[Query]) -> None:
        member = self.members[name]
        todo = [q for q in items if q.id not in member.answers]
        if not todo:
            return
        report = run_network(member.network, todo, RunConfig(cache_path=self.cache_path, progress=False,
                                                                 backends=self.backends))
        for rec in report.results:
            member.answers[rec["id"]] = None if rec["error"] else rec["answer"]
            member.costs[rec["id"]] = (rec["cost_usd"] + rec["cached_cost_usd"] if self.unit == "usd" else
                                       rec["prompt_tokens"] + rec["completion_tokens"] + rec["cached_tokens"])

    def agrees(self, name: str, reference: str, qid: str) -> bool:
        mine, ref = self.members[name].answers.get(qid), self.members[reference].answers.get(qid)
        return mine is not None and mine == ref

    def cost(self, name: str, ids: list[str]) -> float:
        return sum(self.members[name].costs.get(i, 0.0) for i in ids)


def run_smart(network: Network, queries: list[Query], reference: str, candidates: list[str], *,
              delta: float = 0.05, gamma: float = 0.95, bound: str = "clopper-pearson", mix: bool = False,
              cache_path: Path | None = None, check_agreement: bool = True, measure: str = "auto",
              progress=None, backends: dict[str, Any] | None = None) -> tuple[SmartResult, dict[str, Any]]:
    """Faithful SMART (or the anytime variant) over ``queries``; returns the result and run details.

    ``backends``: Backend instances by model name replacing the spec's, as in ``run_network``.
    """
    if reference in candidates:
        raise LlmnetError(f"the reference '{reference}' is also a candidate")
    if len(queries) < 2:
        raise LlmnetError("SMART needs at least 2 items")
    names = [reference, *candidates]
    runner = SmartRunner(network, names, cache_path, measure, backends)
    first = queries[:1]
    for name in names:  # calibrate: everyone answers item 0 once, which gives each its cost
        runner.run(name, first)
    unit_costs = {n: max(runner.cost(n, [first[0].id]), 1e-12) for n in names}
    session = SmartSession(len(queries), Candidate(reference, unit_costs[reference]),
                           [Candidate(c, unit_costs[c]) for c in candidates], delta=delta, gamma=gamma,
                           bound=bound, mix=mix)
    calibration_extra = sum(runner.cost(n, [first[0].id]) for n in names
                            if n != reference and n not in session.to_run())
    while session.profiling:
        start = session.profiled
        batch = queries[start:start + session.batch_limit()]
        todo = session.to_run()
        for name in todo:
            runner.run(name, batch)
        ids = [q.id for q in batch]
        session.observe({n: [runner.agrees(n, reference, i) for i in ids] for n in todo if n != reference},
                        costs_paid={n: runner.cost(n, ids) for n in todo})
        if progress:
            progress(session.profiled, len(queries))
    plan = session.plan()
    applied_cost = 0.0
    assignment: dict[str, str] = {q.id: reference for q in queries[:plan.profiled]}
    for name, lo, hi in plan.blocks:
        block = queries[lo:hi]
        runner.run(name, block)
        applied_cost += runner.cost(name, [q.id for q in block])
        assignment.update({q.id: name for q in block})
    realised = None
    if check_agreement:  # an audit: the reference on the applied items too (not counted in SMART's cost)
        rest = queries[plan.profiled:]
        runner.run(reference, rest)
        agree = sum(runner.agrees(assignment[q.id], reference, q.id) if assignment[q.id] != reference else True
                    for q in queries)
        realised = agree / len(queries)
    result = session.result(realised_agreement=realised, application_cost=applied_cost)
    ref_all = runner.cost(reference, [q.id for q in queries]) if check_agreement else None
    details = {"cost_unit": runner.unit, "calibration_cost_outside_profiling": calibration_extra,
               "reference_cost_measured": ref_all, "assignment": assignment,
               "unit_costs_first_item": unit_costs}
    return result, details


def save_smart(result: SmartResult, details: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``smart.json`` (everything), ``smart.png`` (bounds over items), ``plan.json`` (for the smart router)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict(with_history=True)
    data.update({k: v for k, v in details.items() if k != "assignment"})
    data["savings_ratio"] = data.pop("savings")
    paths = {"json": out_dir / "smart.json", "png": out_dir / "smart.png", "plan": out_dir / "plan.json"}
    paths["json"].write_text(json.dumps(_finite(data), indent=2) + "\n")
    plot_bounds(result, paths["png"])
    shares = {m: c / max(1, sum(result.plan.counts.values())) for m, c in result.plan.counts.items()} or {
        result.reference: 1.0}
    paths["plan"].write_text(json.dumps({"format": PLAN_FORMAT, "version": PLAN_VERSION,
                                         "reference": result.reference, "shares": shares,
                                         "assignment": details["assignment"]}, indent=2) + "\n")
    return paths


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
