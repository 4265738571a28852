"""Running networks: the executor, limits, cache and usage accounting."""

from llmnet.execute.cache import SampleCache
from llmnet.execute.engine import Engine
from llmnet.execute.run import RunConfig, RunReport, arun, run_network
from llmnet.execute.session import Invocation, Session, as_query, install

install()

__all__ = ["Engine", "Invocation", "RunConfig", "RunReport", "SampleCache", "Session", "arun", "as_query",
           "run_network"]
