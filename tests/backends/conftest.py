"""Test doubles for the HTTP backends: an OpenAI-compatible server as an ``httpx2.MockTransport``.

The SDK runs unchanged (real request building, real response parsing, real status
handling); only the transport is replaced, as httpx's own tests do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from llmnet.backends.openai_compat import OpenAIBackend
from llmnet.backends.vllm import VllmBackend
from llmnet.network.spec import OpenAIModel, VllmModel


def completion_body(texts: list[str], *, chat: bool = False, usage: dict | None = None,
                    indices: list[int] | None = None) -> dict[str, Any]:
    """A well-formed (chat) completion response with one choice per text."""
    indices = indices if indices is not None else list(range(len(texts)))
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                   for i, t in zip(indices, texts)]
    else:
        choices = [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in zip(indices, texts)]
    body = {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion", "created": 0,
            "model": "m", "choices": choices}
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


@dataclass
class FakeServer:
    """Records every request; answers with ``reply(request, body)`` (default: n numbered choices)."""

    reply: Callable[[httpx2.Request, dict], httpx2.Response] | None = None
    requests: list[httpx2.Request] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        if self.reply is not None:
            return self.reply(request, body)
        n = body.get("n", 1)
        chat = request.url.path.endswith("/chat/completions")
        return httpx2.Response(200, json=completion_body([f" {j}" for j in range(n)], chat=chat,
                                                         usage={"prompt_tokens": 12, "completion_tokens": 2 * n}))

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def openai_backend(server):
    """Build an OpenAIBackend on the fake server: ``openai_backend(**spec_fields)``."""

    def build(**fields: Any) -> OpenAIBackend:
        spec = OpenAIModel(**{"backend": "openai", "model": "m", "base_url": "http://fake/v1", **fields})
        return OpenAIBackend("m", spec, http_client=server.client())

    return build


@pytest.fixture
def vllm_backend(server):
    """Build a VllmBackend on the fake server: ``vllm_backend(clock=..., **spec_fields)``."""

    def build(clock=None, **fields: Any) -> VllmBackend:
        spec = VllmModel(**{"backend": "vllm", "model": "m", "base_url": "http://fake/v1", **fields})
        extra = {"clock": clock} if clock is not None else {}
        return VllmBackend("m", spec, http_client=server.client(), **extra)

    return build


def run(coro):
    """Run one coroutine on a fresh event loop (no pytest-asyncio needed)."""
    return asyncio.run(coro)
