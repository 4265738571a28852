"""Running networks: the executor, limits, cache and usage accounting."""

from llmnet.execute.batch import export_requests, import_outputs
from llmnet.execute.cache import SampleCache
from llmnet.execute.cluster import RayOptions
from llmnet.execute.engine import Engine
from llmnet.execute.run import RunConfig, RunReport, arun, run_network

__all__ = ["Engine", "RayOptions", "RunConfig", "RunReport", "SampleCache", "arun", "export_requests",
           "import_outputs", "run_network"]
