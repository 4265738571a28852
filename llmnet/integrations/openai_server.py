"""A whole network behind an OpenAI-compatible API (``llmnet serve``): a plain ASGI app on uvicorn.

    GET  /v1/models            the network's name as the one model
    POST /v1/chat/completions  the last user message is the query's question
    POST /v1/completions       the prompt is the question

Fields the OpenAI API does not know (sent with the client's ``extra_body``) become the
query's fields: ``id``, ``answer`` (then ``llmnet.correct`` is graded), ``choices``,
``difficulty``, or anything a prompt template or rule router reads. The reply's content is
the network's extracted answer; ``usage`` sums the tokens of every call the network paid
for (cached samples cost none; ``llmnet.cached_tokens`` counts them); ``llmnet`` carries the
branch, calls, cache hits and cost. ``stream: true`` sends the answer as one chunk, then
``[DONE]``. Mistakes get OpenAI-style 400s, a wrong key 401, an unknown model or route 404, a
body over ``MAX_BODY_BYTES`` 413; a model that failed 502 (503 when it is rate-limited,
unreachable or the budget is spent), each with the reason. Every request shares one ``Session`` (one engine: limits, cache, budget).

The app is a bare ASGI callable with three routes and orjson bodies, not a framework app:
with free model calls the server's own work per request is what ``experiments/bench_serve.py``
measures, and Starlette's middleware stack, request and response objects were a measurable
part of it.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson

from llmnet.errors import BackendError, BackendTimeout, BackendUnavailable, BudgetExceeded, LlmnetError, RateLimited
from llmnet.execute.session import Invocation, Session, as_query
from llmnet.network.graph import Network
from llmnet.network.templates import TemplateError

OPENAI_FIELDS = frozenset({
    "model", "messages", "prompt", "stream", "stream_options", "n", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "user", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls", "suffix", "echo",
    "best_of", "metadata", "store", "service_tier", "modalities", "reasoning_effort", "functions", "function_call",
    "prediction", "audio", "web_search_options", "verbosity", "prompt_cache_key", "safety_identifier",
})
"""Request fields of the OpenAI API: accepted and ignored (the network sets its own sampling);
every other field is a query field."""


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}})


Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
JSON_TYPE = [(b"content-type", b"application/json")]
SSE_TYPE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_TYPE) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


MAX_BODY_BYTES = 32 * 2**20
"""A request body larger than this is refused (413) before it is all in memory."""


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB", code="body_too_large")
    return b"".join(parts)


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    raise ApiError(400, f"{where} must be a string or a list of text parts", param=where)


def _question(body: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list", param="messages")
        for i in range(len(messages) - 1, -1, -1):
            m = messages[i]
            if not isinstance(m, dict):
                raise ApiError(400, f"messages[{i}] must be an object", param=f"messages[{i}]")
            if m.get("role") == "user":
                return _text(m.get("content"), f"messages[{i}].content")
        raise ApiError(400, "no user message: the last user message is the question", param="messages")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string (one prompt per request)", param="prompt")
    return prompt


class NetworkServer:
    """The ASGI app for one network: ``NetworkServer(network, api_key, **session_options)``.

    ASGI's lifespan opens the shared ``Session`` and closes it (``async with server.lifespan()``
    does the same for an in-process client)."""

    def __init__(self, network: Network, api_key: str | None = None, **session_options: Any):
        self.network = network
        self.api_key = api_key
        self._options = session_options
        self.session: Session | None = None
        self.routes: dict[str, tuple[str, Callable[..., Awaitable[bytes]]]] = {
            "/v1/models": ("GET", self.models), "/v1/chat/completions": ("POST", self.chat),
            "/v1/completions": ("POST", self.completions)}

    @asynccontextmanager
    async def lifespan(self):
        self.session = Session(self.network, **self._options)
        try:
            yield self
        finally:
            await self.session.aclose()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except Exception as exc:  # tell the server why it cannot start or stop cleanly
            await send({"type": "lifespan.startup.failed" if self.session is None else "lifespan.shutdown.failed",
                        "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        stream = False
        try:
            route = self.routes.get(scope["path"].rstrip("/") or "/")
            if route is None:
                raise ApiError(404, f"no route {scope['path']}: this server has {', '.join(self.routes)}",
                               code="not_found")
            method, handler = route
            if scope["method"] != method:
                raise ApiError(405, f"{scope['path']} takes {method}, not {scope['method']}", code="method_not_allowed")
            self._check_key(scope)
            if method == "GET":
                body = await handler()
            else:
                body, stream = await handler(await _read_body(receive))
        except ApiError as exc:
            await _reply(send, exc.status, exc.body())
            return
        except Exception as exc:  # a bug, not the client's fault: say so, then let the server log the traceback
            reason = f"internal error: {type(exc).__name__}: {exc}"
            await _reply(send, 500, ApiError(500, reason, "server_error").body())
            raise
        if stream:
            await _reply(send, 200, b"data: " + body + b"\n\ndata: [DONE]\n\n", SSE_TYPE)
        else:
            await _reply(send, 200, body)

    def _check_key(self, scope: dict[str, Any]) -> None:
        if self.api_key is None:
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                           type_="authentication_error", code="invalid_api_key")

    async def models(self) -> bytes:
        return orjson.dumps({"object": "list", "data": [{"id": self.network.name, "object": "model", "created": 0,
                                                         "owned_by": "llmnet"}]})

    async def chat(self, raw: bytes) -> tuple[bytes, bool]:
        return await self._complete(raw, chat=True)

    async def completions(self, raw: bytes) -> tuple[bytes, bool]:
        return await self._complete(raw, chat=False)

    async def _complete(self, raw: bytes, chat: bool) -> tuple[bytes, bool]:
        """The reply's JSON and whether it is to be streamed; raises ``ApiError``."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.network.name:
            raise ApiError(404, f"the model '{model}' does not exist; this server runs '{self.network.name}'",
                           param="model", code="model_not_found")
        if body.get("n") not in (None, 1):
            raise ApiError(400, "n must be 1: a network gives one answer per query", param="n")
        fields = {k: v for k, v in body.items() if k not in OPENAI_FIELDS}
        fields["question"] = _question(body, chat)
        try:
            query = as_query(fields)
        except LlmnetError as exc:
            raise ApiError(400, str(exc)) from None
        assert self.session is not None, "the app's lifespan was not started"
        try:
            result = await self.session.ainvoke(query)
        except TemplateError as exc:
            raise ApiError(400, str(exc)) from None
        except (RateLimited, BackendUnavailable, BackendTimeout, BudgetExceeded) as exc:
            raise ApiError(503, f"{type(exc).__name__}: {exc}", type_="server_error",
                           code="backend_unavailable") from None
        except (BackendError, LlmnetError, ValueError) as exc:
            raise ApiError(502, f"{type(exc).__name__}: {exc}", type_="server_error", code="backend_error") from None
        stream = bool(body.get("stream"))
        return orjson.dumps(self._payload(result, chat, stream)), stream

    def _payload(self, result: Invocation, chat: bool, stream: bool) -> dict[str, Any]:
        content = "" if result.answer is None else str(result.answer)
        u = result.usage
        usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                 "total_tokens": u.prompt_tokens + u.completion_tokens}
        extra = {"id": result.query.id, "answer": result.answer, "correct": result.correct, "branch": result.branch,
                 "branches": result.branches, "calls": u.calls, "cache_hits": u.cache_hits,
                 "cost_usd": round(u.cost_usd, 10), "cached_tokens": u.cached_tokens,
                 "latency_s": round(result.latency_s, 6)}
        base = {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex, "created": int(time.time()),
                "model": self.network.name, "usage": usage, "llmnet": extra}
        if chat and stream:
            choice = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            return {**base, "object": "chat.completion", "choices": [choice]}
        return {**base, "object": "text_completion",
                "choices": [{"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}]}


def create_app(network: Network, api_key: str | None = None, **session_options: Any) -> NetworkServer:
    """The ASGI app serving ``network`` (run it with uvicorn); see ``NetworkServer``."""
    return NetworkServer(network, api_key, **session_options)


def serve(network: Network, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          log_level: str = "warning", **session_options: Any) -> None:
    """Serve ``network`` until interrupted (blocking). uvicorn uses uvloop and httptools when the
    ``serve`` extra installed them; no proxy-header rewriting (the app never reads the client's address)."""
    import uvicorn

    uvicorn.run(create_app(network, api_key, **session_options), host=host, port=port, log_level=log_level,
                access_log=False, proxy_headers=False, server_header=False, lifespan="on")
