"""``vllm serve`` replicas: one request with ``n=K`` and ``seed``, prefix-affine replica choice.

The HTTP call, the response parsing and the error translation are the OpenAI
backend's (this is a subclass); what vLLM adds:

- **n=K in one request.** vLLM prefills a prompt once and forks K sequences from it, so
  K samples cost one prompt's worth of prefill and one request (``supports_n`` is
  always true). With ``seed`` the K samples are reproducible.
- **Constrained choices** through ``extra_body={"structured_outputs": {"choice": [...]}}``
  on both the completion and the chat API (vLLM >= 0.10.2). The old ``guided_choice`` /
  ``guided_*`` fields were removed in vLLM 0.12 and are now accepted *and silently
  ignored*, so they are never sent.
- **Replicas.** ``base_url`` may list several data-parallel replicas of the same model.
  A prompt's samples all go to one replica, chosen by rendezvous (highest-random-weight)
  hashing of the prompt over the healthy replicas: the replica's prefix cache serves
  the re-asks and the larger K of a later run, load spreads evenly, and when a replica
  dies only the prompts it owned move (and move back when it returns).
- **Health.** A connection failure takes a replica out at once (the executor's retry then
  lands on the next replica in the prompt's ranking). At most every
  ``health_interval_s`` a background probe asks each replica ``GET /health`` (vLLM's
  liveness route, at the server root), falling back to ``GET /v1/models`` for servers
  without it; a replica that answers is put back, one that does not is taken out. A
  replica that answers 503 (a server draining before shutdown, or an engine that died)
  is taken out the same way, so the retry goes elsewhere at once.

How vLLM really treats these requests (vLLM's ``v1/engine/parallel_sampling.py`` and
``entrypoints/openai``), and what llmnet does about it:

- **n=K is K child requests with seeds seed + i.** vLLM splits a request with ``n=K`` and
  ``seed=s`` into K child requests whose seeds are ``s, s+1, ..., s+K-1``. That is exactly
  llmnet's per-sample cache (sample i has seed base + i), so a cached K=5 extended to K=10
  asks ``n=5, seed=s+5`` and gets the very samples a single ``n=10`` request would have.
- **The prompt is prefilled once only through automatic prefix caching** (on by default
  in vLLM V1; ``--no-enable-prefix-caching`` turns it off, and under disaggregated prefill
  each child is prefilled on its own). The usage vLLM reports counts the prompt once per
  request, which is what llmnet bills; ``usage.prompt_tokens_details.cached_tokens`` (sent
  with ``--enable-prompt-tokens-details``) says how many prompt tokens the prefix cache
  served: llmnet keeps it per sample and reports it as ``server_cached_tokens``.
- **Reproducibility across runs needs ``VLLM_BATCH_INVARIANT=1``** on the server: without
  it a seeded sample can change with the batch it happened to share the GPU with.
- **Chat requests send ``max_completion_tokens``** (``max_tokens`` is deprecated there);
  completion requests send ``max_tokens``.
- **Unset sampling fields fall back to the model's ``generation_config.json``** (vLLM's
  default ``--generation-config auto``), so ``top_k``, ``min_p``, ``repetition_penalty``,
  ``chat_template_kwargs`` and any ``extra_body`` of the model spec are sent on every
  request and are part of the backend's identity, hence of the cache key.
- **Reasoning models** (``--reasoning-parser``) return the thinking in ``message.reasoning``
  (``reasoning_content`` in older vLLM) and the answer in ``content``; the reasoning is
  kept beside the sample's text instead of being lost, and the ``system_fingerprint`` and
  the served model name are recorded per sample.
- **Concurrency** is capped per model (``limits.concurrency``) and, with
  ``replica_concurrency``, per replica as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from llmnet.backends.base import Completion, Request
from llmnet.backends.openai_compat import OpenAIBackend, public_url
from llmnet.errors import BackendUnavailable

PROBE_TIMEOUT_S = 5.0
"""The longest a health probe waits; a replica slower than this to say it is alive is out."""


@dataclass
class Replica:
    url: str
    label: str                  # the URL fit for messages (no credentials)
    client: openai.AsyncOpenAI
    healthy: bool = True
    slots: asyncio.Semaphore | None = None  # replica_concurrency


def rendezvous_order(key: str, urls: list[str]) -> list[int]:
    """Replica indices ranked for ``key`` by highest random weight (stable per (key, url))."""

    def weight(i: int) -> bytes:
        return hashlib.blake2b(f"{urls[i]}\x1f{key}".encode(), digest_size=8).digest()

    return sorted(range(len(urls)), key=weight, reverse=True)


class VllmBackend(OpenAIBackend):
    """One or several ``vllm serve`` replicas of one model."""

    supports_n = True

    def __init__(self, name: str, spec, *, http_client=None, clock=time.monotonic):
        super().__init__(name, spec, http_client=http_client)
        self._clock = clock
        per_replica = spec.replica_concurrency
        self.replicas = [Replica(url, public_url(url), self._client.with_options(base_url=url),
                                 slots=asyncio.Semaphore(per_replica) if per_replica else None) for url in self.urls]
        self._next_probe = clock() + spec.health_interval_s
        self._probe_task: asyncio.Task | None = None

    @property
    def identity(self) -> str:
        # Replicas serve the same weights: a sample is worth the same from any of them. The
        # sampling fields of the model spec change the distribution: they are part of it.
        extra = self.sampling_extras()
        if not extra:
            return f"vllm:{self.spec.model}"
        digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:16]
        return f"vllm:{self.spec.model}#{digest}"

    def sampling_extras(self, api: str | None = None) -> dict[str, Any]:
        """The spec's vLLM sampling fields as request fields (``chat_template_kwargs`` on chat only)."""
        spec = self.spec
        extra = dict(spec.extra_body or {})
        extra.update({k: getattr(spec, k) for k in ("top_k", "min_p", "repetition_penalty")
                      if getattr(spec, k) is not None})
        if spec.chat_template_kwargs and api in (None, "chat"):
            extra["chat_template_kwargs"] = spec.chat_template_kwargs
        return extra

    def request_params(self, request: Request) -> dict[str, Any]:
        params = super().request_params(request)
        if request.api == "chat":
            params["max_completion_tokens"] = params.pop("max_tokens")
        extra = self.sampling_extras(request.api)
        if extra:
            params["extra_body"] = {**extra, **params.get("extra_body", {})}
        return params

    def choice_constraint(self, request: Request) -> dict[str, Any]:
        return {"extra_body": {"structured_outputs": {"choice": list(request.choices)}}}

    def choice_text(self, text: str, request: Request) -> str:
        return text

    # ------------------------------------------------------------------ routing

    def route(self, request: Request) -> Replica:
        """The healthy replica that ranks first for this prompt (any replica if none is healthy)."""
        order = rendezvous_order(f"{request.system or ''}\x1e{request.prompt}", [r.url for r in self.replicas])
        healthy = [i for i in order if self.replicas[i].healthy]
        return self.replicas[(healthy or order)[0]]

    async def complete(self, request: Request) -> Completion:
        self._maybe_probe()
        replica = self.route(request)
        try:
            if replica.slots is None:
                completion = await self._call(replica.client, request, replica.label)
            else:
                async with replica.slots:
                    completion = await self._call(replica.client, request, replica.label)
        except BackendUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, openai.APIConnectionError) or (
                    isinstance(cause, openai.APIStatusError) and cause.status_code == 503):
                replica.healthy = False  # gone, or draining: the retry goes to the next replica
            raise
        replica.healthy = True
        return completion

    # ------------------------------------------------------------------ health

    def _maybe_probe(self) -> None:
        """Start a background health check when one is due and none is running on this loop."""
        loop = asyncio.get_running_loop()
        task = self._probe_task
        if self._clock() < self._next_probe or (task is not None and not task.done() and task.get_loop() is loop):
            return
        self._next_probe = self._clock() + self.spec.health_interval_s
        self._probe_task = loop.create_task(self.check_health())

    async def check_health(self) -> dict[str, bool]:
        """Probe every replica now; returns url -> healthy (also applied to routing)."""
        alive = await asyncio.gather(*(self._alive(r) for r in self.replicas))
        for replica, ok in zip(self.replicas, alive):
            replica.healthy = ok
        return {r.label: r.healthy for r in self.replicas}

    async def _alive(self, replica: Replica) -> bool:
        root = replica.url.rstrip("/")
        server = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"Authorization": f"Bearer {replica.client.api_key}"}
        timeout = min(PROBE_TIMEOUT_S, self.spec.limits.timeout)
        try:
            health = await self._http.get(f"{server}/health", headers=headers, timeout=timeout)
            if health.status_code == 200:
                return True
            if health.status_code >= 500:
                return False
            models = await self._http.get(f"{root}/models", headers=headers, timeout=timeout)
            return models.status_code < 500
        except (httpx2.HTTPError, OSError):
            return False

    async def aclose(self) -> None:
        task = self._probe_task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().aclose()
