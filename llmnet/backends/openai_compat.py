"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, TGI, ...) through ``openai.AsyncOpenAI``.

One ``complete()`` is exactly one HTTP call. The SDK's own retries are off
(``max_retries=0``): the executor retries, with backoff that honours ``Retry-After``,
so every attempt is seen and counted. Errors are translated in one place,
:func:`translate_errors`, into llmnet's tree (see ``llmnet.errors``).

What a response is worth:

- **Samples.** ``n`` is sent only when the model ``supports_n``; whatever choices come
  back are returned (ordered by their ``index``) and the executor re-asks for missing
  ones, because some servers ignore ``n`` silently (llama.cpp does). Sample ``j`` of a
  request stands for seed ``request.seed + j``; the request carries ``seed=request.seed``.
- **Usage.** Servers report one ``usage`` per request. Prompt tokens were paid once, so
  they go on the first sample and 0 on the others; completion tokens are reported only
  as a total for all choices, so the total is split evenly (the remainder on the first
  samples), which keeps per-request sums exact. A server that sends no usage gets the
  ~4-characters-a-token estimate instead of a silent zero.
- **Constrained choices** (``request.choices`` with ``structured_choices: true``): the
  chat API gets ``response_format`` of type ``json_schema`` with a strict object schema
  ``{"answer": enum[choices]}`` — the form OpenAI requires (a root must be an object),
  which vLLM, SGLang and llama.cpp's ``llama-server`` also accept (llama-cpp-python's
  server does not: leave ``structured_choices`` off there). The reply's ``answer`` is
  unwrapped, so the sample text is exactly one of the choices. The legacy completion API has no portable field for
  this, so it is left unconstrained there (the answer extractor still applies); the
  ``vllm`` backend constrains both APIs with ``structured_outputs``.
- **Secrets.** The API key is read from the environment variable ``api_key_env`` names;
  without ``api_key_env`` a placeholder is sent, so a key in ``OPENAI_API_KEY`` never
  leaks to a local server. The key is kept only inside the SDK client: never in
  ``identity``, ``repr`` or an error message (server messages are scrubbed of it).
- ``max_tokens`` is sent as ``max_tokens``, the field every compatible server knows (the
  ``vllm`` backend sends ``max_completion_tokens`` on chat).
- **What the server says about a sample** is kept on it: a reasoning model's thinking
  (``message.reasoning``, or ``reasoning_content``) beside the answer (a reply cut off while
  thinking is an empty text with its reasoning, not a lost sample), ``system_fingerprint``,
  the served ``model`` name and the prefix-cache hits of ``usage.prompt_tokens_details``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
import pydantic

from llmnet.backends.base import Backend, Completion, Request, Sample, estimate_tokens
from llmnet.errors import BackendError, BackendRejected, BackendTimeout, BackendUnavailable, RateLimited

PLACEHOLDER_KEY = "not-needed"
"""Sent when no ``api_key_env`` is given: local servers want some bearer token, not a secret."""

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_KEY_LIKE = re.compile(r"\b(sk|key|tok)-[A-Za-z0-9_\-*.]{4,}", re.IGNORECASE)
_MAX_DETAIL = 300


class MalformedResponse(ValueError):
    """A 2xx answer that is not a completion (no choices, wrong shape, not JSON)."""


def read_api_key(model_name: str, spec) -> str:
    """The key from ``spec.api_key_env``; a clear error naming the variable (never a value)."""
    if spec.api_key_env is None:
        return PLACEHOLDER_KEY
    value = os.environ.get(spec.api_key_env, "").strip()
    if not value:
        raise BackendError(
            f"model '{model_name}': environment variable {spec.api_key_env} is not set "
            f"(api_key_env names the variable that holds the API key; export it, or remove api_key_env "
            f"for a server that needs no key)")
    return value


def public_url(url: str) -> str:
    """A URL fit for messages and identities: no user:password@, no query string."""
    parsed = httpx2.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None)).rstrip("/")


def base_urls(spec) -> list[str]:
    """The spec's endpoint(s) as a list; no ``base_url`` means ``$OPENAI_BASE_URL`` or OpenAI's."""
    urls = spec.base_url
    if not urls:
        return [os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL]
    urls = [urls] if isinstance(urls, str) else list(urls)
    for url in urls:
        if has_credentials(url):
            raise BackendError(f"base_url {public_url(url)} holds credentials (user:password@): an HTTP client "
                               f"sends them as Basic auth, where a server may reflect them; put the key in an "
                               f"environment variable and name it with api_key_env")
    return urls


def has_credentials(url: str) -> bool:
    """Whether a URL carries ``user:password@`` (which clients send as Basic auth)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.username or parts.password)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_BASE64ISH = re.compile(r"[A-Za-z0-9+/_\-]{8,}={0,2}")


def scrub_secret(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` removed, plain or inside any base64 token (standard or URL-safe,
    e.g. Basic auth ``base64(user:key)`` reflected by a server)."""
    if not secret or secret == PLACEHOLDER_KEY or not text:
        return text
    text = text.replace(secret, "***")
    needle = secret.encode("utf-8", "surrogatepass")

    def check(match: re.Match) -> str:
        token = match.group(0)
        if len(token) * 3 // 4 < len(needle):
            return token
        body = token.rstrip("=")
        for candidate in (body, body[1:], body[2:], body[3:]):  # the key may start mid-group
            padded = candidate + "=" * (-len(candidate) % 4)
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    if needle in decode(padded):
                        return "***"
                except (binascii.Error, ValueError):
                    continue
        return token

    return _BASE64ISH.sub(check, text)


def _scrub(text: str, secret: str | None) -> str:
    text = scrub_secret(text, secret)
    text = _KEY_LIKE.sub(lambda m: f"{m.group(1)}-***", text)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."


@contextmanager
def translate_errors(where: str, secret: str | None = None) -> Iterator[None]:
    """Map openai / transport / parsing errors onto llmnet's tree, ``from exc``.

    429 -> RateLimited(retry_after); timeouts and 408 -> BackendTimeout; connection
    failures, 5xx and malformed bodies -> BackendUnavailable (5xx keeps Retry-After);
    any other 4xx -> BackendRejected (the request itself is wrong: not retried).
    """
    try:
        yield
    except openai.RateLimitError as exc:
        raise RateLimited(f"{where}: rate limited (HTTP 429): {_scrub(exc.message, secret)}",
                          retry_after=retry_after(exc.response.headers)) from exc
    except openai.APITimeoutError as exc:
        raise BackendTimeout(f"{where}: no answer within the timeout") from exc
    except openai.APIConnectionError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "connection error"
        raise BackendUnavailable(f"{where}: cannot reach the server ({cause})") from exc
    except openai.APIStatusError as exc:
        detail = f"HTTP {exc.status_code}: {_scrub(exc.message, secret)}"
        if exc.status_code == 408:
            raise BackendTimeout(f"{where}: {detail}") from exc
        if exc.status_code >= 500:
            raise BackendUnavailable(f"{where}: server error {detail}",
                                     retry_after=retry_after(exc.response.headers)) from exc
        raise BackendRejected(f"{where}: request rejected, {detail}") from exc
    except (openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError, pydantic.ValidationError,
            MalformedResponse) as exc:
        raise BackendUnavailable(f"{where}: malformed response ({type(exc).__name__}: "
                                 f"{_scrub(str(exc), secret)})") from exc


def _field(obj: Any, name: str) -> Any:
    """``obj.name`` of an SDK object (extra fields included) or ``obj[name]`` of a JSON dict."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _choice_index(choice: Any) -> int:
    index = _field(choice, "index")
    return index if isinstance(index, int) else 0


def _choice_text(choice: Any, api: str) -> tuple[str, str | None]:
    """A choice's text and reasoning; a chat message without content (a refusal, a tool call, a
    reasoning model cut off while thinking) has empty text, its reasoning kept beside it."""
    if api == "chat":
        message = _field(choice, "message")
        if message is None:
            raise MalformedResponse("a chat choice has no message")
        content = _field(message, "content")
        reasoning = _field(message, "reasoning") or _field(message, "reasoning_content")  # vLLM new / old name
        return (content if isinstance(content, str) else ""), (reasoning if isinstance(reasoning, str) else None)
    text = _field(choice, "text")
    if not isinstance(text, str):
        raise MalformedResponse("a completion choice has no text")
    return text, None


def unwrap_choice(text: str) -> str:
    """The label of a constrained reply ``{"answer": label}``; the text itself when it is not one."""
    try:
        answer = json.loads(text).get("answer")
    except (ValueError, AttributeError):
        return text
    return answer if isinstance(answer, str) else text


def read_samples(response: Any, api: str, n: int, prompt_estimate: int,
                 unwrap: Callable[[str], str] = lambda t: t) -> tuple[Sample, ...]:
    """The samples of a completion response (an SDK object, or its JSON as a batch output line holds it).

    Sample j is the choice with index j. Usage: see the module doc; the prefix-cache hits
    (``usage.prompt_tokens_details.cached_tokens``, vLLM and OpenAI) go on the first sample like the
    prompt tokens; ``system_fingerprint`` and the served ``model`` go on every sample.
    """
    choices = _field(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse(f"expected a completion with choices, got {type(response).__name__}")
    ordered = sorted(choices, key=_choice_index)[:max(1, n)]
    read = [_choice_text(c, api) for c in ordered]
    texts = [unwrap(t) for t, _ in read]
    usage = _field(response, "usage")
    prompt = _field(usage, "prompt_tokens") if usage is not None else None
    completion = _field(usage, "completion_tokens") if usage is not None else None
    details = _field(usage, "prompt_tokens_details") if usage is not None else None
    cached = _field(details, "cached_tokens") if details is not None else None
    if not isinstance(prompt, int):
        prompt = prompt_estimate
    if not isinstance(completion, int):
        completion = sum(estimate_tokens(t) for t in texts)
    cached = cached if isinstance(cached, int) and cached > 0 else 0
    fingerprint = _field(response, "system_fingerprint")
    served = _field(response, "model")
    fingerprint = fingerprint if isinstance(fingerprint, str) else None
    served = served if isinstance(served, str) else None
    shares = split_evenly(completion, len(texts))
    return tuple(Sample(text, prompt if j == 0 else 0, shares[j], reasoning, cached if j == 0 else 0,
                        fingerprint, served) for j, (text, (_, reasoning)) in enumerate(zip(texts, read)))


def samples_from_body(body: dict[str, Any], unwrap_json: bool = False) -> tuple[Sample, ...]:
    """The samples of a completion's JSON body (one line of a Batch API output file)."""
    if not isinstance(body, dict):
        raise MalformedResponse("the response body is not a JSON object")
    choices = body.get("choices")
    api = "chat" if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
        and "message" in choices[0] else "completion"
    return read_samples(body, api, len(choices) if isinstance(choices, list) else 1, 0,
                        unwrap_choice if unwrap_json else (lambda t: t))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers that differ by at most one and sum to ``total``."""
    base, extra = divmod(max(0, total), parts)
    return [base + (1 if j < extra else 0) for j in range(parts)]


class OpenAIBackend(Backend):
    """``openai.AsyncOpenAI`` against one OpenAI-compatible base URL.

    ``http_client`` replaces the SDK's HTTP client (tests pass one with an
    ``httpx2.MockTransport``); the backend closes it in :meth:`aclose` either way.
    """

    def __init__(self, name: str, spec, *, http_client: httpx2.AsyncClient | None = None):
        super().__init__(name, spec)
        self.supports_n = bool(getattr(spec, "supports_n", type(self).supports_n))
        key = read_api_key(name, spec)
        self.urls = base_urls(spec)
        self._label = public_url(self.urls[0])
        self._http = http_client or openai.DefaultAsyncHttpxClient(timeout=spec.limits.timeout)
        self._client = openai.AsyncOpenAI(base_url=self.urls[0], api_key=key, max_retries=0,
                                          timeout=spec.limits.timeout, http_client=self._http)

    @property
    def identity(self) -> str:
        # A generic server's model name does not pin its weights (llama.cpp answers to any
        # name), so the endpoint is part of what makes two samples interchangeable.
        return f"openai:{self.spec.model}@{self._label}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.spec.model!r}, " \
               f"base_url={[public_url(u) for u in self.urls]!r})"

    # ------------------------------------------------------------------ the one call

    async def complete(self, request: Request) -> Completion:
        return await self._call(self._client, request, self._label)

    async def _call(self, client: openai.AsyncOpenAI, request: Request, url: str) -> Completion:
        """One HTTP call for ``request`` on ``client``; errors leave translated."""
        params = self.request_params(request)
        with translate_errors(f"model '{self.name}' at {url}", client.api_key):
            if request.api == "chat":
                response = await client.chat.completions.create(**params)
            else:
                response = await client.completions.create(**params)
            return self._completion(response, request)

    def request_params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments of ``completions.create`` / ``chat.completions.create``."""
        params: dict[str, Any] = {"model": self.spec.model, "seed": request.seed,
                                  "temperature": request.temperature, "top_p": request.top_p,
                                  "max_tokens": request.max_tokens}
        n = request.n if self.supports_n else 1
        if n > 1:
            params["n"] = n
        if request.stop:
            params["stop"] = list(request.stop)
        if request.api == "chat":
            params["messages"] = ([{"role": "system", "content": request.system}] if request.system else []) + [
                {"role": "user", "content": request.prompt}]
        else:
            params["prompt"] = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
        if request.choices is not None:
            params.update(self.choice_constraint(request))
        return params

    def choice_constraint(self, request: Request) -> dict[str, Any]:
        """Request fields that force the answer to be one of ``request.choices`` (chat only)."""
        if not getattr(self.spec, "structured_choices", False) or request.api != "chat":
            return {}
        schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": list(request.choices)}},
                  "required": ["answer"], "additionalProperties": False}
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "choice", "strict": True, "schema": schema}}}

    def choice_text(self, text: str, request: Request) -> str:
        """The chosen label out of a constrained reply (``{"answer": ...}``); raw text otherwise."""
        if request.choices is None or not self.choice_constraint(request):
            return text
        return unwrap_choice(text)

    def batch_body(self, request: Request) -> dict[str, Any]:
        """The JSON body of ``request`` as one Batch API line carries it (``extra_body`` merged in)."""
        params = self.request_params(request)
        extra = params.pop("extra_body", None) or {}
        return {**params, **extra}

    # ------------------------------------------------------------------ the response

    def _completion(self, response: Any, request: Request) -> Completion:
        return Completion(read_samples(response, request.api, request.n,
                                       estimate_tokens(request.prompt + (request.system or "")),
                                       lambda t: scrub_secret(self.choice_text(t, request), self._client.api_key)))

    async def aclose(self) -> None:
        await self._client.close()
