"""Compile a ``NetworkSpec`` into a frozen ``Network``: build the graph, then validate it.

Validation is a list of small pure checks, each returning problems (never raising), so
one run reports every mistake: unknown inputs and models, cycles (named), nodes the
output never uses, gates with missing or overlapping branches, missing or ambiguous
outputs, and node kinds fed the wrong kind of input.

A gate's branches are compiled as their own ``Network`` (sharing the parent's models and
task); the executor runs only the branch the router picks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import networkx as nx

from llmnet.errors import GraphError, LlmnetError, Problem
from llmnet.network import yamlio
from llmnet.network.compose import gate_spec
from llmnet.network.loader import SourceMap, load_spec_file, load_spec_text, restore_templates, suggest
from llmnet.network.spec import (
    CANDIDATE_PRODUCERS,
    INPUT_FIELDS,
    GateNode,
    NetworkSpec,
    SubgraphSpec,
    template_fields,
)
from llmnet.network.yamlio import Path_, Positions
from llmnet.routing import router_kinds

Check = Callable[["_Draft"], list[Problem]]


@dataclass
class _Draft:
    """What the checks look at: one (sub)network's nodes plus the whole spec around it."""

    spec: NetworkSpec
    nodes: Mapping[str, Any]
    output: str | None
    prefix: Path_  # () for the top level, ("subgraphs", name) for a subgraph
    sources: SourceMap
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

    def problem(self, path: Path_, message: str) -> Problem:
        return self.sources.problem(self.prefix + tuple(path), message)


def _inputs(node: Any) -> list[str]:
    return list(getattr(node, "inputs", []) or [])


def check_inputs(d: _Draft) -> list[Problem]:
    known = list(d.nodes)
    return [
        d.problem(("nodes", name, "inputs", i), f"unknown node '{inp}'" + suggest(inp, known))
        for name, node in d.nodes.items() for i, inp in enumerate(_inputs(node)) if inp not in d.nodes
    ] + [
        d.problem(("nodes", name, "inputs", i), f"node '{name}' lists itself as an input; remove it")
        for name, node in d.nodes.items() for i, inp in enumerate(_inputs(node)) if inp == name
    ]


def check_models(d: _Draft) -> list[Problem]:
    known = list(d.spec.models)
    hint = " Declare it under 'models:'." if not known else ""
    return [
        d.problem(("nodes", name, "model"), f"unknown model '{node.model}'" + suggest(node.model, known) + hint)
        for name, node in d.nodes.items() if hasattr(node, "model") and node.model not in d.spec.models
    ]


def check_cycles(d: _Draft) -> list[Problem]:
    problems = []
    for cycle in nx.simple_cycles(d.graph):
        if len(cycle) < 2:
            continue
        start = cycle.index(min(cycle))
        ordered = cycle[start:] + cycle[:start]  # data-flow order, from the smallest name
        chain = " -> ".join(ordered + [ordered[0]])
        problems.append(d.problem(("nodes", ordered[0], "inputs"),
                                  f"cycle: {chain} (each feeds the next); remove one of these inputs"))
        if len(problems) >= 5:
            break
    return problems


def check_output(d: _Draft) -> list[Problem]:
    if d.output is None:
        sinks = sorted(n for n in d.graph if d.graph.out_degree(n) == 0)
        if len(sinks) == 1:
            return []
        return [d.problem(("output",), f"missing 'output': several nodes could be the result ({', '.join(sinks)}); "
                                    f"name one with 'output: NODE'")]
    if d.output not in d.nodes:
        return [d.problem(("output",), f"output '{d.output}' is not a node" + suggest(d.output, list(d.nodes)))]
    return []


def resolved_output(output: str | None, graph: nx.DiGraph) -> str:
    if output is not None:
        return output
    return next(n for n in graph if graph.out_degree(n) == 0)


def check_unreachable(d: _Draft) -> list[Problem]:
    if check_output(d) or check_inputs(d) or not nx.is_directed_acyclic_graph(d.graph):
        return []
    out = resolved_output(d.output, d.graph)
    used = nx.ancestors(d.graph, out) | {out}
    return [
        d.problem(("nodes", name), f"node '{name}' is unreachable: the output '{out}' does not depend on it; "
                                   f"use it as an input or delete it")
        for name in d.nodes if name not in used
    ]


CANDIDATE_CONSUMERS = ("vote", "judge", "filter", "filter_vote", "select", "rank", "tournament")
"""Built-in kinds that read their inputs' candidates (generators and refiners read any input)."""


def check_input_kinds(d: _Draft) -> list[Problem]:
    problems = []
    for name, node in d.nodes.items():
        if node.kind not in CANDIDATE_CONSUMERS:
            continue
        for i, inp in enumerate(_inputs(node)):
            up = d.nodes.get(inp)
            if up is not None and up.kind not in CANDIDATE_PRODUCERS:
                problems.append(d.problem(
                    ("nodes", name, "inputs", i),
                    f"a {node.kind} node needs candidates from a generator, judge or filter upstream, but '{inp}' is "
                    f"a {up.kind} node, which produces a single answer; feed it a generator instead"))
    return problems


def check_gates(d: _Draft) -> list[Problem]:
    problems = []
    subgraphs = d.spec.subgraphs
    for name, node in d.nodes.items():
        if not isinstance(node, GateNode):
            continue
        if len(node.branches) < 2:
            problems.append(d.problem(("nodes", name, "branches"),
                                      f"gate '{name}' needs at least two branches (has {len(node.branches)})"))
        seen: dict[str, str] = {}
        for branch, target in node.branches.items():
            if target not in subgraphs:
                problems.append(d.problem(("nodes", name, "branches", branch),
                                          f"branch '{branch}' points at unknown subgraph '{target}'"
                                          + suggest(target, list(subgraphs)) + "; declare it under 'subgraphs:'"))
            elif target in seen:
                problems.append(d.problem(("nodes", name, "branches", branch),
                                          f"branches '{seen[target]}' and '{branch}' overlap: both run subgraph "
                                          f"'{target}'; give each branch its own subgraph"))
            else:
                seen[target] = branch
        if node.router.kind not in router_kinds():
            problems.append(d.problem(("nodes", name, "router", "kind"),
                                      f"router kind '{node.router.kind}' is not registered" + suggest(
                                          node.router.kind, router_kinds()) + "; register it with "
                                      "llmnet.register_router before loading the network"))
        for sub_path, branch in node.router.branch_names():
            if branch not in node.branches:
                problems.append(d.problem(("nodes", name, "router", *_split(sub_path)),
                                          f"router sends queries to branch '{branch}', which gate '{name}' does not "
                                          f"have" + suggest(branch, list(node.branches))))
    return problems


def check_input_prompts(d: _Draft) -> list[Problem]:
    """A generator (or refiner) reads its inputs only through {candidates} / {previous}: inputs
    its prompt never reads would be silently ignored, and those fields without inputs are empty."""
    problems = []
    for name, node in d.nodes.items():
        if node.kind not in ("generator", "refine"):
            continue
        try:
            used = [f for f in INPUT_FIELDS if f in template_fields(node.prompt or "")]
        except ValueError:
            continue  # check_templates reports it
        if used and not _inputs(node):
            problems.append(d.problem(("nodes", name, "prompt"),
                                      f"the prompt uses {{{used[0]}}} but generator '{name}' has no inputs; add "
                                      f"'inputs: [NODE]' or take {{{used[0]}}} out of the prompt"))
        elif _inputs(node) and not used:
            what = "has no prompt of its own" if node.prompt is None else "has a prompt that never reads them"
            problems.append(d.problem(("nodes", name, "inputs"),
                                      f"{node.kind} '{name}' takes inputs but {what}; give it a 'prompt' that uses "
                                      f"{{candidates}} (the inputs' candidates, numbered) or {{previous}} (their "
                                      f"answer), or remove 'inputs'"))
    return problems


def check_templates(d: _Draft) -> list[Problem]:
    problems = []
    for name, node in d.nodes.items():
        template = getattr(node, "prompt", None)
        if template:
            try:
                template_fields(template)
            except ValueError as exc:
                problems.append(d.problem(("nodes", name, "prompt"), str(exc)))
    return problems


def _split(sub_path: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for piece in sub_path.replace("]", "").split("."):
        head, *idx = piece.split("[")
        parts.append(head)
        parts.extend(int(i) for i in idx)
    return tuple(parts)


CHECKS: tuple[Check, ...] = (check_inputs, check_models, check_cycles, check_output, check_unreachable,
                             check_input_kinds, check_input_prompts, check_gates, check_templates)


def _build_graph(nodes: Mapping[str, Any]) -> nx.DiGraph:
    g = nx.DiGraph()
    for name, node in nodes.items():
        g.add_node(name, kind=node.kind)
    for name, node in nodes.items():
        for inp in _inputs(node):
            if inp in nodes:
                g.add_edge(inp, name)
    return g


def _subgraph_cycles(spec: NetworkSpec, sources: SourceMap) -> list[Problem]:
    """Gates whose branches lead back into the subgraph that holds them recurse forever."""
    g = nx.DiGraph()
    holders: dict[str, dict[str, Any]] = {"": dict(spec.nodes)}
    holders.update({name: dict(sub.nodes) for name, sub in spec.subgraphs.items()})
    for holder, nodes in holders.items():
        for node in nodes.values():
            if isinstance(node, GateNode):
                for target in node.branches.values():
                    if target in spec.subgraphs:
                        g.add_edge(holder, target)
    return [
        sources.problem(("subgraphs", cycle[0]), "subgraphs include each other through gates: "
                        + " -> ".join(cycle + [cycle[0]]) + "; break the loop")
        for cycle in nx.simple_cycles(g)
    ][:3]


# ----------------------------------------------------------------------------- the network


RUNNER: dict[str, Callable[..., Any]] = {}
"""``ainvoke`` / ``invoke`` / ``session``, installed by ``llmnet.execute`` (which sits above this layer)."""


def _runner(name: str) -> Callable[..., Any]:
    if name not in RUNNER:
        raise LlmnetError("the executor is not loaded: import llmnet (or llmnet.execute) first")
    return RUNNER[name]


@dataclass(frozen=True, eq=False)
class Network:
    """A compiled, validated, read-only network. Build with ``compile_network`` or ``load_network``."""

    spec: NetworkSpec
    graph: nx.DiGraph
    order: tuple[str, ...]
    output: str
    branches: Mapping[str, Mapping[str, "Network"]]
    source: str | None = None
    templated: Mapping[Path_, str] = field(default_factory=dict, repr=False)  # where ${NAME} stood

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nodes(self) -> Mapping[str, Any]:
        return MappingProxyType(dict(self.spec.nodes))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.to_yaml())

    def to_data(self) -> dict[str, Any]:
        """Plain data that loads back into an equal network; ``${NAME}`` kept where it stood."""
        return restore_templates(self.spec.to_data(), dict(self.templated))

    def to_yaml(self) -> str:
        return yamlio.dumps(self.to_data())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def walk(self, prefix: str = ""):
        """Yield (qualified name, node spec) for every node, branches included (``gate/branch/node``)."""
        for name in self.order:
            yield prefix + name, self.spec.nodes[name]
            for branch, sub in self.branches.get(name, {}).items():
                yield from sub.walk(f"{prefix}{name}/{branch}/")

    def models_used(self) -> set[str]:
        return {node.model for _, node in self.walk() if hasattr(node, "model")}

    async def ainvoke(self, query: Any, *, cache: Any = None) -> Any:
        """Run on one query (a question string, a mapping of fields or a Query) and return an
        ``Invocation`` (answer, trace, usage, branch). No cache unless ``cache`` (a SQLite path or
        a ``SampleCache``) is given; calls on one event loop with the same ``cache`` share one
        engine (limits, cache); failures are raised. See ``llmnet.execute.session``."""
        return await _runner("ainvoke")(self, query, cache=cache)

    def invoke(self, query: Any, *, cache: Any = None) -> Any:
        """Blocking ``ainvoke``; calls with the same ``cache`` share one engine on a background loop."""
        return _runner("invoke")(self, query, cache=cache)

    def session(self, **options: Any) -> Any:
        """``async with network.session(cache=PATH, max_cost=..., concurrency=...) as s: await s.ainvoke(q)``."""
        return _runner("session")(self, **options)

    def with_gate(self, name: str, router: Any, branches: Mapping[str, "Network | SubgraphSpec"],
                  output: bool = True) -> "Network":
        """A new network with a gate node ``name`` added (see ``llmnet.network.compose.gate_spec``)."""
        return compile_network(gate_spec(self, name, router, branches, output=output))


def compile_network(spec: NetworkSpec, sources: SourceMap | None = None, source: str | None = None) -> Network:
    """Validate ``spec`` and freeze it into a ``Network``; raises GraphError listing every problem."""
    sources = sources or SourceMap(Positions(source))
    problems = [p for sub in spec.subgraphs.values() if sub.include is not None
                for p in [sources.problem(("subgraphs",), "an 'include' must be resolved by loading the file "
                                                          "(llmnet.load_network); in Python pass nodes instead")]]
    problems += _subgraph_cycles(spec, sources)
    if problems:
        raise GraphError(list(dict.fromkeys(problems)))
    top = _compile(spec, dict(spec.nodes), spec.output, (), sources, source)
    return replace(top, templated=MappingProxyType(dict(sources.templated)))


def _compile(spec: NetworkSpec, nodes: dict[str, Any], output: str | None, prefix: Path_,
             sources: SourceMap, source: str | None) -> Network:
    draft = _Draft(spec, nodes, output, prefix, sources, _build_graph(nodes))
    problems = [p for check in CHECKS for p in check(draft)]
    if problems:
        raise GraphError(list(dict.fromkeys(problems)))
    out = resolved_output(output, draft.graph)
    branches: dict[str, dict[str, Network]] = {}
    for name, node in nodes.items():
        if isinstance(node, GateNode):
            branches[name] = {
                b: _compile(spec, dict(spec.subgraphs[t].nodes), spec.subgraphs[t].output,
                            ("subgraphs", t), sources, source)
                for b, t in node.branches.items()
            }
    sub_spec = spec if not prefix else spec.model_copy(update={"nodes": nodes, "output": out})
    graph = nx.freeze(draft.graph)
    return Network(sub_spec, graph, tuple(nx.topological_sort(graph)), out,
                   MappingProxyType({k: MappingProxyType(v) for k, v in branches.items()}), source)


def load_network(path: str | Path, params: Mapping[str, Any] | None = None) -> Network:
    """Load, check and compile a network file. ``params`` override its ``${NAME}`` defaults."""
    spec, sources = load_spec_file(path, dict(params or {}))
    return compile_network(spec, sources, str(path))


def loads_network(text: str, params: Mapping[str, Any] | None = None, file: str | None = None,
                  base: str | Path | None = None) -> Network:
    """Like ``load_network`` for YAML text (``base`` resolves includes)."""
    spec, sources = load_spec_text(text, file, dict(params or {}), Path(base) if base else None)
    return compile_network(spec, sources, file)
