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
  without it; a replica that answers is put back, one that does not is taken out.
"""

from __future__ import annotations

import asyncio
import hashlib
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
        self.replicas = [Replica(url, public_url(url), self._client.with_options(base_url=url)) for url in self.urls]
        self._next_probe = clock() + spec.health_interval_s
        self._probe_task: asyncio.Task | None = None

    @property
    def identity(self) -> str:
        # Replicas serve the same weights: a sample is worth the same from any of them.
        return f"vllm:{self.spec.model}"

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
            completion = await self._call(replica.client, request, replica.label)
        except BackendUnavailable as exc:
            if isinstance(exc.__cause__, openai.APIConnectionError):
                replica.healthy = False
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
