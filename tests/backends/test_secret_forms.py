"""A key reflected in encoded form never shows; credentials in base_url are refused; Retry-After is capped."""

from __future__ import annotations

import asyncio
import base64

import httpx2
import pytest

from llmnet.backends.base import Backend, Request
from llmnet.backends.openai_compat import OpenAIBackend, scrub_secret
from llmnet.errors import BackendError, RateLimited
from llmnet.execute.limits import CostBudget, Limited
from llmnet.network.spec import OpenAIModel, SimulatedModel
from tests.backends.conftest import completion_body, run

SECRET = "sk-test-SECRET1234567890abcdef"


@pytest.mark.parametrize("form", [
    lambda k: base64.b64encode(k.encode()).decode(),
    lambda k: base64.b64encode(f"user:{k}".encode()).decode(),
    lambda k: base64.b64encode(f"ab:{k}".encode()).decode(),
    lambda k: base64.urlsafe_b64encode(f"x{k}".encode()).decode().rstrip("="),
    lambda k: "Basic " + base64.b64encode(f":{k}".encode()).decode(),
])
def test_encoded_key_is_scrubbed(form):
    text = f"your header was {form(SECRET)} (rejected)"
    clean = scrub_secret(text, SECRET)
    assert clean.startswith("your header was") and clean.endswith("(rejected)")
    for piece in clean.split():
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                assert SECRET.encode() not in decode(piece + "==")
            except ValueError:
                pass
    assert scrub_secret("a plain answer: 42", SECRET) == "a plain answer: 42"


def test_server_reflecting_the_key_base64_in_error_and_text(monkeypatch):
    monkeypatch.setenv("LLMNET_TEST_KEY", SECRET)
    encoded = base64.b64encode(f"Bearer {SECRET}".encode()).decode()

    def handler(request):
        if request.url.path.endswith("/completions") and b"fail" in request.content:
            return httpx2.Response(401, json={"error": {"message": f"bad auth header {encoded}"}})
        return httpx2.Response(200, json=completion_body([f" 4 (you sent {encoded})"]))

    spec = OpenAIModel(backend="openai", model="m", base_url="http://fake/v1", api_key_env="LLMNET_TEST_KEY")

    async def go():
        backend = OpenAIBackend("m", spec, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
        try:
            ok = await backend.complete(Request(prompt="q"))
            with pytest.raises(BackendError) as info:
                await backend.complete(Request(prompt="fail"))
            return ok, info.value
        finally:
            await backend.aclose()

    ok, err = run(go())
    assert encoded not in ok.samples[0].text and "***" in ok.samples[0].text
    assert encoded not in str(err) and "***" in str(err)


def test_credentials_in_base_url_refused(monkeypatch):
    spec = OpenAIModel(backend="openai", model="m", base_url=f"http://user:{SECRET}@fake/v1")
    with pytest.raises(BackendError, match="api_key_env") as info:
        OpenAIBackend("m", spec)
    assert SECRET not in str(info.value)


def test_credentials_in_base_url_caught_by_validate(tmp_path):
    from tests.cli.test_main import llmnet

    path = tmp_path / "n.yaml"
    path.write_text(f"models: {{m: {{backend: openai, model: x, base_url: 'http://u:{SECRET}@h/v1'}}}}\n"
                    "nodes:\n  g: {kind: generator, model: m}\n")
    res = llmnet("validate", path)
    assert res.returncode == 2 and "api_key_env" in res.stderr and SECRET not in res.stderr + res.stdout


class AskingToWait(Backend):
    """Always rate limited, asking for ``wait`` seconds."""

    def __init__(self, wait):
        super().__init__("w", SimulatedModel(backend="simulated", model="s",
                                             limits={"retries": 3, "max_backoff": 2.0, "backoff": 0.01}))
        self.wait, self.calls = wait, 0

    async def complete(self, request):
        self.calls += 1
        raise RateLimited("slow down", retry_after=self.wait)


def test_retry_after_beyond_max_backoff_fails_the_attempt_with_the_servers_value():
    slept = []

    async def sleep(s):
        slept.append(s)

    backend = AskingToWait(100_000)
    limited = Limited(backend, CostBudget(None), sleep=sleep)
    with pytest.raises(RateLimited, match="100000s.*max_backoff 2s"):
        asyncio.run(limited.call(Request(prompt="q")))
    assert slept == [] and backend.calls == 1


def test_retry_after_within_max_backoff_is_honoured():
    slept = []

    async def sleep(s):
        slept.append(s)

    backend = AskingToWait(1.5)
    limited = Limited(backend, CostBudget(None), sleep=sleep)
    with pytest.raises(RateLimited):
        asyncio.run(limited.call(Request(prompt="q")))
    assert backend.calls == 4 and all(s >= 1.5 for s in slept) and max(slept) <= 2.0
