"""A small LM as the complexity model's eyes: llama.cpp embeddings of the task text.

Bae et al. (arXiv 2312.11511) fine-tune a language model to read a task's complexity off
its text. On a CPU, llmnet offers the next best thing beside TF-IDF: the task text
embedded by a bundled local model (SmolLM2-135M by default, through llama-cpp-python with
``embedding=True``), token vectors mean-pooled and L2-normalised, standardised with the
training tasks' mean and scale, then the same calibrated logistic regression. The block is
stored as data (model name, mean, scale); predicting with it loads the model (the
``local`` extra). Embeddings are kept per (model, text) for the life of the process, so
cross-validation embeds every task once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from llmnet.errors import ArtefactError

DEFAULT_MODEL = "smollm2-135m"
_MODELS: dict[str, Any] = {}
_CACHE: dict[tuple[str, str], np.ndarray] = {}
_LOCK = threading.Lock()


def _model(name: str):
    if name not in _MODELS:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ArtefactError("embedding features need llama-cpp-python: pip install 'llmnet-compound[local]'") from None
        from llmnet.backends.local import model_path

        _MODELS[name] = Llama(model_path=str(model_path(name)), embedding=True, n_ctx=512, verbose=False,
                              n_threads=2)
    return _MODELS[name]


def embed_texts(texts: Sequence[str], model: str = DEFAULT_MODEL) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (texts x dim) of ``texts`` by the local ``model``."""
    with _LOCK:
        todo = [t for t in dict.fromkeys(texts) if (model, t) not in _CACHE]
        if todo:
            llm = _model(model)
            for text in todo:
                vectors = np.asarray(llm.embed(text or " "), dtype=float)
                pooled = vectors.mean(axis=0) if vectors.ndim == 2 else vectors
                norm = np.linalg.norm(pooled)
                _CACHE[(model, text)] = pooled / norm if norm > 0 else pooled
        return np.vstack([_CACHE[(model, t)] for t in texts])


@dataclass(frozen=True, eq=False)
class EmbeddingBlock:
    """Standardised embeddings as one feature block (``FeatureBlock``'s interface)."""

    model: str
    mean: np.ndarray
    scale: np.ndarray
    kind: str = field(default="embedding", init=False)

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(f"{self.model}:{i}" for i in range(len(self.mean)))

    @classmethod
    def fit(cls, texts: Sequence[str], model: str = DEFAULT_MODEL) -> "EmbeddingBlock":
        X = embed_texts(texts, model)
        scale = X.std(axis=0)
        return cls(model, X.mean(axis=0), np.where(scale > 0, scale, 1.0))

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> "EmbeddingBlock":
        return cls(str(d["model"]), np.asarray(d["mean"], dtype=float), np.asarray(d["scale"], dtype=float))

    def to_data(self) -> dict[str, Any]:
        return {"kind": "embedding", "model": self.model, "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        # scaled down by sqrt(dim) so the block's row norm is comparable to a TF-IDF block's
        z = (embed_texts(texts, self.model) - self.mean) / self.scale / np.sqrt(len(self.mean))
        return sparse.csr_matrix(z)
