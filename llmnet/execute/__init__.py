"""Running networks: the executor, limits, cache and usage accounting."""

from llmnet.execute.cache import SampleCache
from llmnet.execute.engine import Engine
from llmnet.execute.run import RunConfig, RunReport, arun, run_network

__all__ = ["Engine", "RunConfig", "RunReport", "SampleCache", "arun", "run_network"]
