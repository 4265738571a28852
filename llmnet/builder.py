"""Build networks in Python with the same power as YAML, and embed gates in them.

    from llmnet import NetworkBuilder
    b = NetworkBuilder("gated", task={"prompt": "Question: {question}\\nAnswer:"})
    b.model("smol", backend="local", model="smollm2-135m")
    b.subgraph("cheap", nodes={"one": b.node("generator", model="smol", temperature=0)})
    b.subgraph("voted", nodes={"gen": b.node("generator", model="smol", samples=5),
                               "vote": b.node("vote", inputs=["gen"])}, output="vote")
    b.gate("route", router={"kind": "rule", "rules": [...], "default": "cheap"},
           branches={"cheap": "cheap", "strong": "voted"})
    network = b.build()                  # validated exactly like a YAML file
    network.to_yaml()                    # loads back into an equal network

``Network.with_gate`` puts a router in front of networks a user already has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from llmnet.errors import Problem, SpecError
from llmnet.loader import SourceMap, _pydantic_problem
from llmnet.routing.specs import RouterSpec
from llmnet.spec import ModelSpec, NetworkSpec, NodeSpec, SubgraphSpec, TaskSpec
from llmnet.yamlio import Positions

if TYPE_CHECKING:
    from llmnet.graph import Network

_NODE = TypeAdapter(NodeSpec)
_MODEL = TypeAdapter(ModelSpec)
_ROUTER = TypeAdapter(RouterSpec)


def _validate(adapter: TypeAdapter, data: Any, path: tuple[str, ...]) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        sources = SourceMap(Positions(None))
        raise SpecError([_pydantic_problem({**e, "loc": path + tuple(e["loc"])}, _nest(path, data), sources)
                         for e in exc.errors()]) from None


def _nest(path: tuple[str, ...], data: Any) -> Any:
    for part in reversed(path):
        data = {part: data}
    return data


class NetworkBuilder:
    """Accumulates models, nodes and subgraphs; ``build()`` validates and compiles."""

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
        return _validate(_NODE, {"kind": kind, **fields}, ("nodes", kind))

    def model(self, name: str, spec: Any = None, **fields: Any) -> "NetworkBuilder":
        self.models[name] = spec if spec is not None and not fields else _validate(_MODEL, fields, ("models", name))
        return self

    def add(self, name: str, kind: str, **fields: Any) -> "NetworkBuilder":
        self.nodes[name] = _validate(_NODE, {"kind": kind, **fields}, ("nodes", name))
        return self

    def generator(self, name: str, **fields: Any) -> "NetworkBuilder":
        return self.add(name, "generator", **fields)

    def vote(self, name: str, inputs: list[str], **fields: Any) -> "NetworkBuilder":
        return self.add(name, "vote", inputs=inputs, **fields)

    def gate(self, name: str, router: Any, branches: Mapping[str, str], **fields: Any) -> "NetworkBuilder":
        router = router if not isinstance(router, Mapping) else _validate(_ROUTER, dict(router), ("router",))
        return self.add(name, "gate", router=router, branches=dict(branches), **fields)

    def subgraph(self, name: str, network: "Network | None" = None, *, nodes: Mapping[str, Any] | None = None,
                 output: str | None = None) -> "NetworkBuilder":
        """Add a subgraph from node specs, or from a whole ``Network`` (its models come along)."""
        if network is not None:
            self._merge_models(network.spec, name)
            self.subgraphs.update({k: v for k, v in network.spec.subgraphs.items() if k not in self.subgraphs})
            self.subgraphs[name] = SubgraphSpec(nodes=dict(network.spec.nodes), output=network.output,
                                                description=network.spec.description)
        else:
            self.subgraphs[name] = SubgraphSpec(nodes=dict(nodes or {}), output=output)
        return self

    def output(self, name: str) -> "NetworkBuilder":
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
            raise SpecError([_pydantic_problem(e, {}, sources) for e in exc.errors()]) from None

    def build(self) -> "Network":
        from llmnet.graph import compile_network

        return compile_network(self.spec())


def add_gate(base: "Network", name: str, router: Any, branches: Mapping[str, "Network | SubgraphSpec | str"],
             output: bool = True) -> "Network":
    """A network whose top level is a gate ``name`` choosing among ``branches``.

    Each branch is a ``Network`` (its nodes become a subgraph named ``<name>_<branch>``
    and its models are merged), a ``SubgraphSpec``, or the name of a subgraph ``base``
    already has. Pass ``base`` itself as a branch to keep the current pipeline as one
    option. ``base`` gives the task, models, params and name. With ``output=False`` the
    gate is added next to the existing nodes (it must then be used by something, or
    validation reports it as unreachable).
    """
    b = NetworkBuilder(base.spec.name, task=base.spec.task, params=base.spec.params,
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
    return b.build()
