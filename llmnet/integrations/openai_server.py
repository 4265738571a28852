"""A whole network behind an OpenAI-compatible API (``llmnet serve``), on Starlette.

    GET  /v1/models            the network's name as the one model
    POST /v1/chat/completions  the last user message is the query's question
    POST /v1/completions       the prompt is the question

Fields the OpenAI API does not know (sent with the client's ``extra_body``) become the
query's fields: ``id``, ``answer`` (then ``llmnet.correct`` is graded), ``choices``,
``difficulty``, or anything a prompt template or rule router reads. The reply's content is
the network's extracted answer; ``usage`` sums the tokens of every call the network paid
for (cached samples cost none; ``llmnet.cached_tokens`` counts them); ``llmnet`` carries the
branch, calls, cache hits and cost. ``stream: true`` sends the answer as one chunk, then
``[DONE]``. Mistakes get OpenAI-style 400s, a wrong key 401, an unknown model 404; a model
that failed 502 (503 when it is rate-limited, unreachable or the budget is spent), each with
the reason. Every request shares one ``Session`` (one engine: limits, cache, budget).
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

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

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


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
    """The ASGI app for one network: ``NetworkServer(network, session_options).app``."""

    def __init__(self, network: Network, api_key: str | None = None, **session_options: Any):
        self.network = network
        self.api_key = api_key
        self._options = session_options
        self.session: Session | None = None
        self.app = Starlette(routes=[Route("/v1/models", self.models, methods=["GET"]),
                                     Route("/v1/chat/completions", self.chat, methods=["POST"]),
                                     Route("/v1/completions", self.completions, methods=["POST"])],
                             lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette):
        self.session = Session(self.network, **self._options)
        try:
            yield
        finally:
            await self.session.aclose()

    def _check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                           type_="authentication_error", code="invalid_api_key")

    async def models(self, request: Request) -> Response:
        try:
            self._check_key(request)
        except ApiError as exc:
            return exc.response()
        return JSONResponse({"object": "list", "data": [{"id": self.network.name, "object": "model", "created": 0,
                                                         "owned_by": "llmnet"}]})

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, chat: bool) -> Response:
        try:
            self._check_key(request)
            try:
                body = json.loads(await request.body())
            except ValueError:
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
        except ApiError as exc:
            return exc.response()
        payload = self._payload(result, chat, stream=bool(body.get("stream")))
        if not body.get("stream"):
            return JSONResponse(payload)
        chunk = "data: " + json.dumps(payload) + "\n\n" + "data: [DONE]\n\n"
        return StreamingResponse(iter([chunk]), media_type="text/event-stream")

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


def create_app(network: Network, api_key: str | None = None, **session_options: Any) -> Starlette:
    """The ASGI app serving ``network`` (run it with uvicorn); see ``NetworkServer``."""
    return NetworkServer(network, api_key, **session_options).app


def serve(network: Network, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          log_level: str = "warning", **session_options: Any) -> None:
    """Serve ``network`` until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_app(network, api_key, **session_options), host=host, port=port, log_level=log_level,
                access_log=False)
