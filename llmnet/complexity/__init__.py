"""ComplexityNet in llmnet: label task complexity by running tiers, train a router, gate subgraphs by it.

Bae et al., "ComplexityNet: Increasing LLM Inference Efficiency by Learning Task
Complexity" (arXiv 2312.11511), with whole subgraphs as tiers, calibrated probabilities,
a cost-aware decision rule and artefacts stored as JSON::

    from llmnet.complexity import load_tiers, label_tasks, train_router, evaluate_router, held_out
    tiers = load_tiers("graphs/tiers_local.yaml")
    labels = label_tasks(tiers, load_dataset("arithmetic:n=100"), trials=5, cache_path="cache.sqlite")
    model = train_router(labels.records)            # RouterModel; model.save("router.json")
    report = evaluate_router(held_out(labels.records, model), model)   # or cross_validate(labels.records, folds=5)
    gated = tiers.gated({"kind": "complexitynet", "path": "router.json", "rule": "cost_aware"})

The CLI is ``llmnet complexity label | train | eval`` (``llmnet.cli.complexity``).
"""

from llmnet._lazy import lazy_exports
from llmnet.complexity import router as _router  # noqa: F401  (registers the router kind on import)

_LAZY = {
    "ComplexityClassifier": "llmnet.complexity.classifier",
    "ComplexityReport": "llmnet.complexity.report",
    "cross_validate": "llmnet.complexity.evaluate",
    "embed_texts": "llmnet.complexity.embed",
    "oracle_tiers": "llmnet.complexity.report",
    "read_split": "llmnet.complexity.evaluate",
    "LabelSet": "llmnet.complexity.label",
    "RouterModel": "llmnet.complexity.classifier",
    "Tier": "llmnet.complexity.tiers",
    "Tiers": "llmnet.complexity.tiers",
    "assign_label": "llmnet.complexity.label",
    "evaluate_router": "llmnet.complexity.evaluate",
    "held_out": "llmnet.complexity.evaluate",
    "label_tasks": "llmnet.complexity.label",
    "llm_scores": "llmnet.complexity.classifier",
    "load_router_model": "llmnet.complexity.classifier",
    "load_tiers": "llmnet.complexity.tiers",
    "paper_class": "llmnet.complexity.label",
    "read_labels": "llmnet.complexity.label",
    "split_records": "llmnet.complexity.evaluate",
    "tiers_from_network": "llmnet.complexity.tiers",
    "train_router": "llmnet.complexity.evaluate",
}

__all__ = ["ComplexityClassifier", "ComplexityReport", "LabelSet", "RouterModel", "Tier", "Tiers", "assign_label",
           "cross_validate", "embed_texts", "evaluate_router", "held_out", "label_tasks", "llm_scores",
           "load_router_model", "load_tiers", "oracle_tiers", "paper_class", "read_labels", "read_split",
           "split_records", "tiers_from_network", "train_router"]

__getattr__ = lazy_exports(__name__, _LAZY)
