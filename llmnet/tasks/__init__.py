"""What a network is asked and how its answers are graded: queries, datasets, answers, sandboxed code."""

from llmnet.tasks.datasets import load_dataset
from llmnet.tasks.query import Query

__all__ = ["Query", "load_dataset"]
