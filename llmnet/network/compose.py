"""Network specs composed in Python: the part of the builder that needs no compiler.

``llmnet.network.builder.NetworkBuilder`` adds ``build()``; ``Network.with_gate`` uses
``gate_spec``. Kept apart so the compiler and the builder never import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from llmnet.errors import Problem, SpecError
from llmnet.network.loader import SourceMap, pydantic_problem
from llmnet.network.spec import ModelSpec, NetworkSpec, SubgraphSpec, TaskSpec, node_adapter
from llmnet.network.yamlio import Positions
from llmnet.routing.specs import RouterSpec

_MODEL = TypeAdapter(ModelSpec)
_ROUTER = TypeAdapter(RouterSpec)


def _validate(adapter: TypeAdapter, data: Any, path: tuple[str, ...]) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        sources = SourceMap(Positions(None))
        raise SpecError([pydantic_problem({**e, "loc": path + tuple(e["loc"])}, _nest(path, data), sources)
                         for e in exc.errors()]) from None


def _nest(path: tuple[str, ...], data: Any) -> Any:
    for part in reversed(path):
        data = {part: data}
    return data


class SpecBuilder:
    """Accumulates models, nodes and subgraphs into a validated ``NetworkSpec`` (``spec()``)."""

    def __init__(self, name: str = "network", *, task: TaskSpec | Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None, description: str | None = None):
        self.name = name
        self.description = description
        self.task = task if isinstance(task, TaskSpec) else TaskSpec.model_validate(dict(task or {}))
        self.params = dict(params or {})
        self.models: dict[str, Any] = {}
        self.nodes: dict[str, Any] = {}
        self.subgraphs: dict[str, SubgraphSpec] = {}
        self._output: str | None = None

    @staticmethod
    def node(kind: str, **fields: Any) -> Any:
        """A validated node spec of ``kind`` (usable in ``subgraph(nodes=...)``)."""
        return _validate(node_adapter(), {"kind": kind, **fields}, ("nodes", kind))

    def model(self, name: str, spec: Any = None, **fields: Any) -> "SpecBuilder":
        self.models[name] = spec if spec is not None and not fields else _validate(_MODEL, fields, ("models", name))
        return self

    def add(self, name: str, kind: str, **fields: Any) -> "SpecBuilder":
        self.nodes[name] = _validate(node_adapter(), {"kind": kind, **fields}, ("nodes", name))
        return self

    def generator(self, name: str, **fields: Any) -> "SpecBuilder":
        return self.add(name, "generator", **fields)

    def vote(self, name: str, inputs: list[str], **fields: Any) -> "SpecBuilder":
        return self.add(name, "vote", inputs=inputs, **fields)

    def gate(self, name: str, router: Any, branches: Mapping[str, str], **fields: Any) -> "SpecBuilder":
        router = router if not isinstance(router, Mapping) else _validate(_ROUTER, dict(router), ("router",))
        return self.add(name, "gate", router=router, branches=dict(branches), **fields)

    def subgraph(self, name: str, network: Any = None, *, nodes: Mapping[str, Any] | None = None,
                 output: str | None = None) -> "SpecBuilder":
        """Add a subgraph from node specs, or from a whole ``Network`` (its models come along)."""
        if network is not None:
            self._merge_models(network.spec, name)
            self.subgraphs.update({k: v for k, v in network.spec.subgraphs.items() if k not in self.subgraphs})
            self.subgraphs[name] = SubgraphSpec(nodes=dict(network.spec.nodes), output=network.output,
                                                description=network.spec.description)
        else:
            self.subgraphs[name] = SubgraphSpec(nodes=dict(nodes or {}), output=output)
        return self

    def output(self, name: str) -> "SpecBuilder":
        self._output = name
        return self

    def _merge_models(self, spec: NetworkSpec, where: str) -> None:
        for key, model in spec.models.items():
            if key in self.models and self.models[key] != model:
                raise SpecError(Problem(None, f"subgraphs.{where}", f"model '{key}' is defined differently in "
                                                                  f"'{spec.name}' and in '{self.name}'; rename one"))
            self.models[key] = model

    def spec(self) -> NetworkSpec:
        try:
            return NetworkSpec(name=self.name, description=self.description, params=self.params,
                               models=self.models, task=self.task, subgraphs=self.subgraphs, nodes=self.nodes,
                               output=self._output)
        except ValidationError as exc:
            sources = SourceMap(Positions(None))
            raise SpecError([pydantic_problem(e, {}, sources) for e in exc.errors()]) from None


def gate_spec(base: Any, name: str, router: Any, branches: Mapping[str, Any],
              output: bool = True) -> NetworkSpec:
    """The spec of a network whose top level is a gate ``name`` choosing among ``branches``.

    Each branch is a ``Network`` (its nodes become a subgraph named ``<name>_<branch>``
    and its models are merged), a ``SubgraphSpec``, or the name of a subgraph ``base``
    already has. Pass ``base`` itself as a branch to keep the current pipeline as one
    option. ``base`` gives the task, models, params and name. With ``output=False`` the
    gate is added next to the existing nodes (it must then be used by something, or
    validation reports it as unreachable). Networks are read through ``.spec`` and
    ``.output`` only.
    """
    b = SpecBuilder(base.spec.name, task=base.spec.task, params=base.spec.params,
                    description=base.spec.description)
    b.models.update(base.spec.models)
    b.subgraphs.update(base.spec.subgraphs)
    targets: dict[str, str] = {}
    for branch, target in branches.items():
        if isinstance(target, str):
            targets[branch] = target
            continue
        sub_name = f"{name}_{branch}"
        if isinstance(target, SubgraphSpec):
            b.subgraphs[sub_name] = target
        else:
            b.subgraph(sub_name, target)
        targets[branch] = sub_name
    if not output:
        b.nodes.update(base.spec.nodes)
        b._output = base.output
    b.gate(name, router, targets)
    if output:
        b.output(name)
    return b.spec()
