"""Running networks: the executor, limits, cache and usage accounting."""

from llmnet.execute.batch import export_requests, import_outputs
from llmnet.execute.cache import SampleCache
from llmnet.execute.cluster import RayOptions
from llmnet.execute.engine import Engine
from llmnet.execute.run import RunConfig, RunReport, arun, run_network
from llmnet.execute.session import Invocation, Session, as_query, install

install()

__all__ = ["Engine", "Invocation", "RayOptions", "RunConfig", "RunReport", "SampleCache", "Session", "arun",
           "as_query", "export_requests", "import_outputs", "run_network"]
