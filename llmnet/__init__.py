"""llmnet: compound-inference networks of LLM calls, declared in YAML, run fast and cheap."""

from llmnet.builder import NetworkBuilder
from llmnet.errors import LlmnetError, SpecError
from llmnet.graph import Network, compile_network, load_network, loads_network
from llmnet.query import Query

__all__ = ["LlmnetError", "Network", "NetworkBuilder", "Query", "SpecError", "compile_network", "load_network",
           "loads_network"]
__version__ = "0.1.0"
