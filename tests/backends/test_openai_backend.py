"""OpenAIBackend against an httpx2.MockTransport: request fields, usage, errors, secrets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx2
import pytest

from llmnet.backends import make_backend
from llmnet.backends.base import Request
from llmnet.backends.openai_compat import OpenAIBackend, retry_after, split_evenly
from llmnet.errors import BackendError, BackendRejected, BackendTimeout, BackendUnavailable, RateLimited
from llmnet.network.spec import OpenAIModel
from tests.backends.conftest import completion_body, run


async def _complete(backend, request):
    try:
        return await backend.complete(request)
    finally:
        await backend.aclose()


def _error(backend, request=Request(prompt="q")) -> BaseException:
    with pytest.raises(BackendError) as info:
        run(_complete(backend, request))
    return info.value


# ----------------------------------------------------------------------------- requests


def test_completion_request_fields(server, openai_backend):
    request = Request(prompt="Question: 1 + 1\nAnswer:", n=1, seed=17, temperature=0.3, top_p=0.9,
                      max_tokens=6, stop=("\n", "Question:"))
    out = run(_complete(openai_backend(), request))
    assert len(server.requests) == 1
    assert server.requests[0].url.path == "/v1/completions"
    assert server.bodies[0] == {"model": "m", "prompt": "Question: 1 + 1\nAnswer:", "seed": 17, "temperature": 0.3,
                                "top_p": 0.9, "max_tokens": 6, "stop": ["\n", "Question:"]}
    assert [s.text for s in out.samples] == [" 0"]


def test_no_n_without_supports_n(server, openai_backend):
    run(_complete(openai_backend(), Request(prompt="q", n=5, seed=3)))
    assert "n" not in server.bodies[0] and server.bodies[0]["seed"] == 3


def test_n_and_seed_with_supports_n(server, openai_backend):
    out = run(_complete(openai_backend(supports_n=True), Request(prompt="q", n=4, seed=100)))
    assert server.bodies[0]["n"] == 4 and server.bodies[0]["seed"] == 100
    assert [s.text for s in out.samples] == [" 0", " 1", " 2", " 3"]


def test_fewer_choices_than_n_are_returned_as_they_are(server, openai_backend):
    server.reply = lambda req, body: httpx2.Response(200, json=completion_body(
        [" 7"], usage={"prompt_tokens": 9, "completion_tokens": 1}))
    out = run(_complete(openai_backend(supports_n=True), Request(prompt="q", n=3)))
    assert [s.text for s in out.samples] == [" 7"]
    assert (out.samples[0].prompt_tokens, out.samples[0].completion_tokens) == (9, 1)


def test_chat_messages_with_system(server, openai_backend):
    out = run(_complete(openai_backend(), Request(prompt="2 + 2?", system="Be brief.", api="chat", seed=1)))
    assert server.requests[0].url.path == "/v1/chat/completions"
    assert server.bodies[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "2 + 2?"}]
    assert "prompt" not in server.bodies[0]
    assert [s.text for s in out.samples] == [" 0"]


def test_chat_without_system_sends_one_message(server, openai_backend):
    run(_complete(openai_backend(), Request(prompt="hi", api="chat")))
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "hi"}]


def test_completion_api_puts_system_before_prompt(server, openai_backend):
    run(_complete(openai_backend(), Request(prompt="hi", system="sys")))
    assert server.bodies[0]["prompt"] == "sys\n\nhi"


# ----------------------------------------------------------------------------- usage


def test_usage_prompt_once_completion_split_evenly(server, openai_backend):
    server.reply = lambda req, body: httpx2.Response(200, json=completion_body(
        [" a", " b", " c"], indices=[2, 0, 1], usage={"prompt_tokens": 30, "completion_tokens": 7}))
    out = run(_complete(openai_backend(supports_n=True), Request(prompt="q", n=3)))
    assert [s.text for s in out.samples] == [" b", " c", " a"]  # ordered by choice index
    assert [s.prompt_tokens for s in out.samples] == [30, 0, 0]
    assert [s.completion_tokens for s in out.samples] == [3, 2, 2]


def test_missing_usage_is_estimated_not_zero(server, openai_backend):
    server.reply = lambda req, body: httpx2.Response(200, json=completion_body([" 12345678"]))
    out = run(_complete(openai_backend(), Request(prompt="x" * 40)))
    assert out.samples[0].prompt_tokens == 10 and out.samples[0].completion_tokens == 2


@pytest.mark.parametrize("total,parts", [(0, 1), (7, 3), (9, 3), (1, 4), (100, 7)])
def test_split_evenly(total, parts):
    shares = split_evenly(total, parts)
    assert sum(shares) == total and max(shares) - min(shares) <= 1 and len(shares) == parts


# ----------------------------------------------------------------------------- constrained choices


def test_structured_choices_on_chat_send_enum_schema_and_unwrap(server, openai_backend):
    server.reply = lambda req, body: httpx2.Response(200, json=completion_body(['{"answer": "B"}'], chat=True))
    out = run(_complete(openai_backend(structured_choices=True),
                        Request(prompt="pick", api="chat", choices=("A", "B", "C"))))
    fmt = server.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["A", "B", "C"]
    assert fmt["json_schema"]["strict"] is True
    assert [s.text for s in out.samples] == ["B"]


def test_choices_unconstrained_when_not_enabled_or_completion_api(server, openai_backend):
    run(_complete(openai_backend(), Request(prompt="pick", api="chat", choices=("A", "B"))))
    run(_complete(openai_backend(structured_choices=True), Request(prompt="pick", choices=("A", "B"))))
    for body in server.bodies:
        assert "response_format" not in body and "structured_outputs" not in body
        assert not any(k.startswith("guided_") for k in body)


# ----------------------------------------------------------------------------- errors


def _status(code: int, headers: dict | None = None, body: dict | None = None):
    return lambda req, b: httpx2.Response(code, json=body or {"error": {"message": f"status {code}"}},
                                          headers=headers or {})


@pytest.mark.parametrize("headers,expected", [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({}, None),
    ({"retry-after": "soon"}, None),
])
def test_rate_limited_with_retry_after(server, openai_backend, headers, expected):
    server.reply = _status(429, headers)
    err = _error(openai_backend())
    assert isinstance(err, RateLimited) and err.retry_after == expected
    assert err.__cause__ is not None and len(server.requests) == 1  # the SDK never retried


def test_retry_after_http_date():
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert retry_after({"retry-after": format_datetime(when, usegmt=True)}) == pytest.approx(30, abs=2)
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert retry_after({"retry-after": format_datetime(past, usegmt=True)}) == 0.0


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_server_errors_are_unavailable_with_retry_after(server, openai_backend, code):
    server.reply = _status(code, {"retry-after": "3"})
    err = _error(openai_backend())
    assert isinstance(err, BackendUnavailable) and err.retryable and err.retry_after == 3.0
    assert str(code) in str(err)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 422])
def test_other_client_errors_are_rejected(server, openai_backend, code):
    server.reply = _status(code)
    err = _error(openai_backend())
    assert isinstance(err, BackendRejected) and not err.retryable and str(code) in str(err)


def test_408_is_a_timeout(server, openai_backend):
    server.reply = _status(408)
    assert isinstance(_error(openai_backend()), BackendTimeout)


def test_transport_timeout_is_backend_timeout(server, openai_backend):
    def slow(req, body):
        raise httpx2.ReadTimeout("too slow", request=req)

    server.reply = slow
    err = _error(openai_backend())
    assert isinstance(err, BackendTimeout) and err.retryable and len(server.requests) == 1


@pytest.mark.parametrize("exc", [httpx2.ConnectError, httpx2.RemoteProtocolError, httpx2.ReadError])
def test_connection_failures_are_unavailable(server, openai_backend, exc):
    def fail(req, body):
        raise exc("boom", request=req)

    server.reply = fail
    err = _error(openai_backend())
    assert isinstance(err, BackendUnavailable) and err.__cause__ is not None


@pytest.mark.parametrize("response", [
    httpx2.Response(200, content=b'{"choices": [', headers={"content-type": "application/json"}),
    httpx2.Response(200, content=b"\xff\xfe\x00garbage", headers={"content-type": "application/json"}),
    httpx2.Response(200, content=b"<html>oops</html>", headers={"content-type": "text/html"}),
    httpx2.Response(200, json={"id": "x", "object": "text_completion"}),
    httpx2.Response(200, json={"choices": []}),
    httpx2.Response(200, json={"choices": [{"index": 0}]}),
    httpx2.Response(200, json=["not", "an", "object"]),
], ids=["truncated", "binary", "html", "no-choices", "empty-choices", "choice-without-text", "list"])
def test_malformed_bodies_are_unavailable(server, openai_backend, response):
    server.reply = lambda req, body: response
    err = _error(openai_backend())
    assert isinstance(err, BackendUnavailable) and "malformed" in str(err) and err.__cause__ is not None


def test_error_message_names_model_and_url(server, openai_backend):
    server.reply = _status(400, body={"error": {"message": "context length exceeded"}})
    err = _error(openai_backend())
    assert "'m'" in str(err) and "http://fake/v1" in str(err) and "context length exceeded" in str(err)


# ----------------------------------------------------------------------------- secrets

SECRET = "sk-test-SECRET1234567890abcdef"


def test_key_from_env_is_sent_but_never_shown(server, monkeypatch):
    monkeypatch.setenv("LLMNET_TEST_KEY", SECRET)
    server.reply = _status(401, body={"error": {"message": f"Incorrect API key provided: {SECRET}."}})
    spec = OpenAIModel(backend="openai", model="m", base_url="http://fake/v1", api_key_env="LLMNET_TEST_KEY")
    backend = OpenAIBackend("m", spec, http_client=server.client())
    shown = [repr(backend), str(backend), backend.identity, repr(vars(backend))]
    err = _error(backend)
    shown += [str(err), repr(err)]
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert isinstance(err, BackendRejected)
    for text in shown:
        assert SECRET not in text and "SECRET1234" not in text


def test_missing_key_variable_is_named_clearly(monkeypatch):
    monkeypatch.delenv("LLMNET_ABSENT_KEY", raising=False)
    spec = OpenAIModel(backend="openai", model="m", api_key_env="LLMNET_ABSENT_KEY")
    with pytest.raises(BackendError, match="LLMNET_ABSENT_KEY"):
        make_backend("m", spec)


def test_without_api_key_env_a_placeholder_is_sent_not_openai_api_key(server, openai_backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    run(_complete(openai_backend(), Request(prompt="q")))
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


# ----------------------------------------------------------------------------- identity and wiring


def test_identity_names_model_and_endpoint_and_credentials_are_refused():
    backend = make_backend("big", OpenAIModel(backend="openai", model="gpt-4o-mini", base_url="http://host:8000/v1"))
    assert isinstance(backend, OpenAIBackend)
    assert backend.identity == "openai:gpt-4o-mini@http://host:8000/v1"
    run(backend.aclose())
    spec = OpenAIModel(backend="openai", model="gpt-4o-mini", base_url="http://user:pw@host:8000/v1")
    with pytest.raises(BackendError, match="api_key_env") as info:  # sent as Basic auth: refused
        make_backend("big", spec)
    assert ":pw" not in str(info.value)


def test_supports_n_follows_the_spec(openai_backend):
    assert openai_backend().supports_n is False
    assert openai_backend(supports_n=True).supports_n is True


def test_timeout_and_no_sdk_retries(openai_backend):
    backend = openai_backend(limits={"timeout": 3.5})
    assert backend._client.max_retries == 0 and backend._client.timeout == 3.5


def test_aclose_closes_the_http_client(server):
    http = server.client()
    spec = OpenAIModel(backend="openai", model="m", base_url="http://fake/v1")
    run(OpenAIBackend("m", spec, http_client=http).aclose())
    assert http.is_closed


def test_request_body_is_json_serialisable_for_every_api(server, openai_backend):
    for api in ("completion", "chat"):
        run(_complete(openai_backend(), Request(prompt="q", api=api, stop=("\n",))))
    assert all(json.dumps(b) for b in server.bodies)
