"""Backends by name. Each module implements ``Backend.complete`` and nothing else."""

from __future__ import annotations

import importlib

from llmnet.backends.base import Backend, Completion, Request, Sample

_MODULES = {"simulated": ("llmnet.backends.simulated", "SimulatedBackend"),
            "local": ("llmnet.backends.local", "LocalBackend"),
            "openai": ("llmnet.backends.openai_compat", "OpenAIBackend"),
            "vllm": ("llmnet.backends.vllm", "VllmBackend"),
            "replay": ("llmnet.backends.replay", "ReplayBackend")}


def make_backend(name: str, spec) -> Backend:
    """The backend for a model spec (imports only what that backend needs)."""
    module, cls = _MODULES[spec.backend]
    return getattr(importlib.import_module(module), cls)(name, spec)


__all__ = ["Backend", "Completion", "Request", "Sample", "make_backend"]
