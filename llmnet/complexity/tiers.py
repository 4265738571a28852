"""Tiers: the ordered subgraphs a ComplexityNet router chooses among, declared once.

A tiers file is an ordinary network file (so ``llmnet validate`` and ``llmnet run`` work
on it) whose output node is a gate: the gate's branches are the tiers, cheapest first,
and each branch's subgraph is what that tier runs. The gate's own router is only what
running the file alone does (``graphs/tiers_local.yaml`` sends everything to the top
tier); labelling runs every tier, and ``complexity_gated.yaml`` includes the file and
puts a trained router in front of the same subgraphs::

    params:
      cost_unit: calls          # what the costs count (optional)
      cost_single: 1            # cost_<tier>: declared cost per task (optional)
      cost_vote5: 5
    subgraphs: {single: ..., vote5: ...}
    nodes:
      tiers:
        kind: gate
        router: {kind: rule, default: vote5}
        branches: {single: single, vote5: vote5}   # cheapest first
    output: tiers

Costs: declare ``cost_<tier>`` for every tier or for none. With none declared the cost
unit is ``calls`` and each tier's cost is measured while labelling: the model samples
one run of the tier draws for a task, cache hits included (a local model costs nothing
in dollars, so calls is the honest unit; ``samples`` in a result record).

Trials: ``network_for(tier, trial)`` is the tier as a standalone network whose sampled
calls draw fresh seeds: a generator's seed moves by ``trial x samples`` and a judge's
by ``trial``, so trial t of a vote-5 uses samples 5t..5t+4 and never a sample of
another trial, yet two tiers with the same request (one sample vs a vote of five) share
samples through the cache. Greedy calls (temperature 0) keep their seed: every trial
of a deterministic call is the same draw, so it is paid once. Tie-breaking coins of
vote nodes move by ``trial`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmnet.errors import Problem, SpecError
from llmnet.network.graph import Network, compile_network, load_network
from llmnet.network.spec import FilterVoteNode, GateNode, GeneratorNode, SubgraphSpec, VoteNode

COST_PREFIX = "cost_"
MEASURED_UNIT = "calls"


@dataclass(frozen=True)
class Tier:
    name: str
    subgraph: str
    cost: float | None  # declared cost per task; None: measured in calls while labelling


@dataclass(frozen=True)
class Tiers:
    """An ordered tier ladder over one network's subgraphs (cheapest first)."""

    network: Network
    gate: str
    tiers: tuple[Tier, ...]
    cost_unit: str

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def index(self, tier: str | int) -> int:
        if isinstance(tier, int):
            if not 0 <= tier < len(self.tiers):
                raise IndexError(f"tier {tier} out of range (0..{len(self.tiers) - 1})")
            return tier
        if tier not in self.names:
            raise KeyError(f"unknown tier '{tier}' (tiers: {', '.join(self.names)})")
        return self.names.index(tier)

    def network_for(self, tier: str | int, trial: int = 0) -> Network:
        """Tier ``tier`` as a standalone network, its sampled calls seeded for ``trial`` (see module doc)."""
        name = self.tiers[self.index(tier)].name
        branch = self.network.branches[self.gate][name]
        spec = branch.spec
        shifted = spec.model_copy(update={
            "name": f"{self.network.name}/{name}" + (f"/trial{trial}" if trial else ""),
            "nodes": shift_seeds(spec.nodes, trial),
            "subgraphs": {k: SubgraphSpec(nodes=shift_seeds(s.nodes, trial), output=s.output,
                                          description=s.description) for k, s in spec.subgraphs.items()},
        })
        return compile_network(shifted, source=self.network.source)

    def gated(self, router: Mapping[str, Any], gate: str = "route") -> Network:
        """The tiers' network with a gate ``gate`` (router spec ``router``) over the tier subgraphs."""
        return self.network.with_gate(gate, dict(router), {t.name: t.subgraph for t in self.tiers})


def shift_seeds(nodes: Mapping[str, Any], trial: int) -> dict[str, Any]:
    """Node specs whose sampled calls and coins draw trial ``trial``'s seeds (greedy calls unchanged)."""
    if trial == 0:
        return dict(nodes)
    out: dict[str, Any] = {}
    for name, node in nodes.items():
        update: dict[str, Any] = {}
        if isinstance(node, VoteNode):
            update["seed"] = node.seed + trial
        elif hasattr(node, "temperature") and node.temperature > 0:
            stride = node.samples if isinstance(node, GeneratorNode) else 1
            update["seed"] = node.seed + trial * stride
        if isinstance(node, FilterVoteNode):
            update["vote_seed"] = node.vote_seed + trial
        out[name] = node.model_copy(update=update) if update else node
    return out


def tiers_from_network(network: Network, gate: str | None = None, costs: Mapping[str, float] | None = None,
                       cost_unit: str | None = None) -> Tiers:
    """Tiers from a compiled network: the branches of ``gate`` (default: the output node), cheapest first.

    Costs come from ``costs`` or else from the network's ``cost_<tier>`` params.
    """
    file = network.source
    gate = gate or network.output
    node = network.spec.nodes.get(gate)
    if not isinstance(node, GateNode):
        what = f"node '{gate}' is not a gate" if node is not None else f"there is no node '{gate}'"
        raise SpecError(Problem(file, "nodes", f"{what}: a tiers file's output is a gate whose branches are the "
                                               f"tiers, cheapest first"))
    names = list(node.branches)
    params = network.spec.params
    declared = dict(costs) if costs is not None else {
        k[len(COST_PREFIX):]: v for k, v in params.items() if k.startswith(COST_PREFIX) and k != "cost_unit"}
    problems = []
    for tier, value in declared.items():
        where = f"params.{COST_PREFIX}{tier}"
        if tier not in names:
            problems.append(Problem(file, where, f"cost for unknown tier '{tier}' (tiers: {', '.join(names)})"))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append(Problem(file, where, f"a cost must be a number >= 0, got {value!r}"))
    if declared and not problems and set(declared) != set(names):
        missing = [n for n in names if n not in declared]
        problems.append(Problem(file, "params", f"declare a cost for every tier or for none; missing: "
                                                f"{', '.join(COST_PREFIX + m for m in missing)}"))
    unit = cost_unit or params.get("cost_unit") or MEASURED_UNIT
    if not declared and unit != MEASURED_UNIT:
        problems.append(Problem(file, "params.cost_unit", f"only '{MEASURED_UNIT}' can be measured; declare "
                                                          f"cost_<tier> for every tier to use '{unit}'"))
    if not problems and declared:
        ordered = [float(declared[n]) for n in names]
        for a, b, lo, hi in zip(names, names[1:], ordered, ordered[1:]):
            if hi < lo:
                problems.append(Problem(file, f"nodes.{gate}.branches", f"tiers must be listed cheapest first, "
                                                                         f"but '{b}' ({hi:g}) costs less than "
                                                                         f"'{a}' ({lo:g})"))
    if problems:
        raise SpecError(problems)
    tiers = tuple(Tier(n, node.branches[n], float(declared[n]) if declared else None) for n in names)
    return Tiers(network, gate, tiers, str(unit))


def load_tiers(path: str | Path, gate: str | None = None, params: Mapping[str, Any] | None = None) -> Tiers:
    """Load a tiers file (a network file; see the module docstring)."""
    return tiers_from_network(load_network(path, params), gate)

