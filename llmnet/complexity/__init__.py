"""ComplexityNet in llmnet: label task complexity by running tiers, train a router, gate subgraphs by it.

Bae et al., "ComplexityNet: Increasing LLM Inference Efficiency by Learning Task
Complexity" (arXiv 2312.11511), with whole subgraphs as tiers, calibrated probabilities,
a cost-aware decision rule and artefacts stored as JSON::

    from llmnet.complexity import load_tiers, label_tasks, train_router, evaluate_router, held_out
    tiers = load_tiers("graphs/tiers_local.yaml")
    labels = label_tasks(tiers, load_dataset("arithmetic:n=100"), trials=5, cache_path="cache.sqlite")
    model = train_router(labels.records)            # RouterModel; model.save("router.json")
    report = evaluate_router(held_out(labels.records, model), model)
    gated = tiers.gated({"kind": "complexitynet", "path": "router.json", "rule": "cost_aware"})

The CLI is ``llmnet complexity label | train | eval`` (``llmnet.complexity.cli``).
"""

from llmnet.complexity.classifier import ComplexityClassifier, RouterModel, llm_scores, load_router_model
from llmnet.complexity.evaluate import ComplexityReport, evaluate_router, held_out, split_records, train_router
from llmnet.complexity.label import LabelSet, assign_label, label_tasks, paper_class, read_labels
from llmnet.complexity.tiers import Tier, Tiers, load_tiers, tiers_from_network

__all__ = ["ComplexityClassifier", "ComplexityReport", "LabelSet", "RouterModel", "Tier", "Tiers", "assign_label",
           "evaluate_router", "held_out", "label_tasks", "llm_scores", "load_router_model", "load_tiers", "paper_class",
           "read_labels", "split_records", "tiers_from_network", "train_router"]
