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

from llmnet.network.compose import SpecBuilder
from llmnet.network.graph import Network, compile_network


class NetworkBuilder(SpecBuilder):
    """Accumulates models, nodes and subgraphs; ``build()`` validates and compiles."""

    def build(self) -> Network:
        return compile_network(self.spec())
