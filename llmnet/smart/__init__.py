"""Jo & Trummer, "SMART" (arXiv 2403.13835): profile cheaper models against a reference, then mix them.

``session`` is the profiling state machine, ``bounds`` its confidence bounds, ``plots`` its
picture, ``mix`` the model-mix optimisation, ``simulate`` the paper's simulations,
``experiment`` runs it through the executor, ``router`` applies a saved plan as a gate
router (kind ``smart``, registered on import).
"""

from llmnet._lazy import lazy_exports
from llmnet.smart import router as _router  # noqa: F401  (registers the router kind on import)

_LAZY = {
    "Candidate": "llmnet.smart.session",
    "SmartResult": "llmnet.smart.session",
    "SmartSession": "llmnet.smart.session",
    "run_smart": "llmnet.smart.experiment",
    "save_smart": "llmnet.smart.experiment",
}

__all__ = ["Candidate", "SmartResult", "SmartSession", "run_smart", "save_smart"]

__getattr__ = lazy_exports(__name__, _LAZY)
