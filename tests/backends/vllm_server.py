"""A test double of ``vllm serve`` that behaves the way vLLM does where llmnet depends on it.

It runs as an ``httpx2.MockTransport`` handler (the SDK, request building and response
parsing run unchanged) and reproduces, from vLLM's source:

- ``n=K`` with ``seed=s`` is K child requests seeded ``s, s+1, ..., s+K-1``
  (``v1/engine/parallel_sampling.py``): a sample depends on the prompt, the sampling fields
  and its own seed only, so ``n=5, seed=0`` equals ``n=2, seed=0`` plus ``n=3, seed=2``.
- automatic prefix caching: a prompt seen before on the same replica has its full 16-token
  blocks served from the cache, reported as ``usage.prompt_tokens_details.cached_tokens``
  (when the server runs with ``--enable-prompt-tokens-details``).
- a reasoning parser: chat answers carry the thinking in ``message.reasoning`` (or
  ``reasoning_content``, the older name) beside ``content``; a reply cut off by the token
  limit while thinking has ``content: null``.
- ``system_fingerprint`` and the served model name on every response.
- draining: a replica shutting down answers 503 on every route, ``/health`` included.
- replicas by host name; a host in ``down`` refuses connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field

import httpx2

BLOCK = 16  # vLLM's default KV block size: prefix caching works in whole blocks


@dataclass
class VllmLikeServer:
    served_model: str = "m"
    reasoning_field: str | None = None      # "reasoning" or "reasoning_content": a reasoning parser is on
    prompt_tokens_details: bool = True      # --enable-prompt-tokens-details
    latency_s: float = 0.0                  # > 0: answers asynchronously after this long
    health_route: bool = True               # False: a server without /health (404)
    down: set[str] = field(default_factory=set)
    draining: set[str] = field(default_factory=set)
    requests: list[httpx2.Request] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    hits: Counter = field(default_factory=Counter)
    in_flight: Counter = field(default_factory=Counter)
    max_in_flight: Counter = field(default_factory=Counter)
    seen: dict[str, set] = field(default_factory=dict)  # host -> prompts in its prefix cache

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))

    def __call__(self, request: httpx2.Request):
        host = request.url.host
        if host in self.down:
            raise httpx2.ConnectError("connection refused", request=request)
        if host in self.draining:
            return httpx2.Response(503, json={"error": {"message": "server is shutting down", "code": 503}})
        self.paths.append(request.url.path)
        if request.method == "GET":
            if request.url.path == "/health":
                return httpx2.Response(200 if self.health_route else 404)
            return httpx2.Response(200, json={"object": "list", "data": [{"id": self.served_model,
                                                                          "object": "model"}]})
        body = json.loads(request.content)
        self.requests.append(request)
        self.bodies.append(body)
        self.hits[host] += 1
        if self.latency_s <= 0:
            return self._answer(host, request.url.path.endswith("/chat/completions"), body)
        return self._later(host, request.url.path.endswith("/chat/completions"), body)

    async def _later(self, host: str, chat: bool, body: dict) -> httpx2.Response:
        self.in_flight[host] += 1
        self.max_in_flight[host] = max(self.max_in_flight[host], self.in_flight[host])
        try:
            await asyncio.sleep(self.latency_s)
            return self._answer(host, chat, body)
        finally:
            self.in_flight[host] -= 1

    # ------------------------------------------------------------------ sampling

    def sample_text(self, prompt: str, seed: int | None, body: dict) -> str:
        """What child request ``seed`` draws: a function of the prompt, sampling fields and seed only."""
        if seed is None:
            return f" {random.random():.6f}"
        fields = {k: body.get(k) for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                           "chat_template_kwargs")}
        digest = hashlib.blake2b(json.dumps([prompt, seed, fields], sort_keys=True).encode(), digest_size=4)
        return f" {int.from_bytes(digest.digest(), 'big') % 1000}"

    def _answer(self, host: str, chat: bool, body: dict) -> httpx2.Response:
        if chat and "max_tokens" in body:
            # vLLM still accepts it, deprecated; the double refuses it so a test sees it was not sent
            return httpx2.Response(400, json={"error": {"message": "max_tokens is deprecated on chat"}})
        prompt = json.dumps(body["messages"]) if chat else body["prompt"]
        n, seed = body.get("n", 1), body.get("seed")
        limit = body.get("max_completion_tokens" if chat else "max_tokens", 16)
        prompt_tokens = max(1, len(prompt) // 4)
        cached = (prompt_tokens // BLOCK) * BLOCK if prompt in self.seen.setdefault(host, set()) else 0
        self.seen[host].add(prompt)
        choices, completion_tokens = [], 0
        for i in range(n):  # child i: seed + i
            text = self.sample_text(prompt, None if seed is None else seed + i, body)
            completion_tokens += 2
            if not chat:
                choices.append({"index": i, "text": text, "finish_reason": "stop", "logprobs": None})
                continue
            message = {"role": "assistant", "content": text}
            finish = "stop"
            if self.reasoning_field:
                thought = f"Let me think about{text}."
                if limit < 8:  # cut off while thinking: no answer yet
                    message["content"], finish = None, "length"
                message[self.reasoning_field] = thought
            choices.append({"index": i, "message": message, "finish_reason": finish})
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if self.prompt_tokens_details:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return httpx2.Response(200, json={
            "id": f"cmpl-{len(self.bodies)}", "object": "chat.completion" if chat else "text_completion",
            "created": 0, "model": self.served_model, "system_fingerprint": f"vllm-0.11-{host}",
            "choices": choices, "usage": usage})
