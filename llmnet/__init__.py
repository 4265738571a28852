"""llmnet: compound-inference networks of LLM calls, declared in YAML, run fast and cheap.

The public API is ``__all__`` below. Layout, one folder per part, imports pointing one way
(cli -> scaling, smart, complexity -> execute -> nodes, backends -> tasks -> network ->
routing -> errors): ``network`` (the YAML file, validation, the builder), ``nodes`` (one
module per node kind), ``execute`` (executor, limits, cache, usage, runs), ``backends``,
``routing`` (the generic Router and the rule router), ``tasks`` (queries, datasets, answers,
sandboxed code), and one wing per paper: ``scaling`` (Chen et al.), ``smart`` (Jo &
Trummer), ``complexity`` (Bae et al.). Importing ``llmnet`` imports the wings, which
register their router kinds.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from llmnet import complexity, scaling, smart  # noqa: F401  (the wings register their router kinds)
from llmnet.errors import LlmnetError, SpecError
from llmnet.execute import Invocation, RayOptions, RunConfig, RunReport, SampleCache, Session, arun, run_network
from llmnet.network import Network, NetworkBuilder, compile_network, load_network, loads_network
from llmnet.network.spec import CustomCallNode, CustomNode
from llmnet.nodes import register_node
from llmnet.nodes.base import Answer, Candidate
from llmnet.routing import AsyncRouter, Router, RuleRouter, build_router, register_router
from llmnet.tasks import Query, load_dataset

try:
    __version__ = _version("llmnet-compound")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Answer", "AsyncRouter", "Candidate", "CustomCallNode", "CustomNode", "Invocation", "LlmnetError",
           "Network", "NetworkBuilder", "Query", "RayOptions", "Router", "RuleRouter", "RunConfig",
           "RunReport", "SampleCache", "Session", "SpecError", "__version__", "arun", "build_router",
           "compile_network", "load_dataset", "load_network", "loads_network", "register_node",
           "register_router", "run_network"]
