"""Chen et al., "Are More LLM Calls All You Need?" (arXiv 2403.02419): scaling of Vote and Filter-Vote.

``vote`` holds the exact estimator of vote accuracy from a sample pool, ``laws`` the fitted
scaling laws and their optimum K*, ``experiment`` draws pools through the executor and
writes ``scaling.json``, ``plots`` draws it.
"""

from llmnet._lazy import lazy_exports

_LAZY = {
    "Pool": "llmnet.scaling.vote",
    "ScalingReport": "llmnet.scaling.report",
    "analyse_pools": "llmnet.scaling.experiment",
    "fit_answer_distribution": "llmnet.scaling.answer_law",
    "read_pools": "llmnet.scaling.pools",
    "parse_ks": "llmnet.scaling.experiment",
    "run_scaling": "llmnet.scaling.experiment",
    "scaling_report": "llmnet.scaling.report",
}

__all__ = ["Pool", "ScalingReport", "analyse_pools", "fit_answer_distribution", "parse_ks", "read_pools",
           "run_scaling", "scaling_report"]

__getattr__ = lazy_exports(__name__, _LAZY)
