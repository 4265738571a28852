"""The network file: YAML -> pydantic spec -> validated, frozen graph; the Python builder; drawing."""

from llmnet.network.builder import NetworkBuilder
from llmnet.network.graph import Network, compile_network, load_network, loads_network

__all__ = ["Network", "NetworkBuilder", "compile_network", "load_network", "loads_network"]
