"""The OpenAI-compatible app in process (ASGI transport): request shapes, SSE framing, status codes."""

import asyncio
import json

import httpx2
import pytest

pytest.importorskip("orjson", reason="needs the [serve] extra: pip install -e '.[serve]'")

from llmnet import loads_network  # noqa: E402
from llmnet.integrations.openai_server import create_app  # noqa: E402

NET = """
name: net
models: {sim: {backend: simulated, model: s, skill: 1.0, price: {input: 1000, output: 1000}}}
task: {prompt: "Q: {question}\\nA:", answer: {kind: number}}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
  vote: {kind: vote, inputs: [gen]}
"""


def call(requests, **app_options):
    app = create_app(loads_network(NET), **app_options)

    async def main():
        async with app.lifespan():
            async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t/v1/") as c:
                return [await c.request(method, path, **kw) for method, path, kw in requests]

    return asyncio.run(main())


def chat(content, **extra):
    return ("POST", "chat/completions", {"json": {"model": "net", "messages": [{"role": "user", "content": content}],
                                                  **extra}})


def test_content_parts_completions_list_prompt_and_usage():
    a, b = call([chat([{"type": "text", "text": "2 + 5"}], answer="7"),
                 ("POST", "completions", {"json": {"prompt": ["2 + 5"], "answer": "7"}})])
    assert a.status_code == b.status_code == 200
    assert a.json()["choices"][0]["message"]["content"] == "7" == b.json()["choices"][0]["text"]
    usage = a.json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    extra = a.json()["llmnet"]
    assert extra["calls"] == 1 and extra["correct"] is True and extra["branch"] is None


def test_stream_is_one_chunk_then_done():
    (r,) = call([chat("2 + 5", answer="7", stream=True)])
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e[len("data: "):] for e in r.text.strip().split("\n\n")]
    assert events[-1] == "[DONE]" and len(events) == 2
    chunk = json.loads(events[0])
    assert chunk["object"] == "chat.completion.chunk" and chunk["choices"][0]["delta"]["content"] == "7"


@pytest.mark.parametrize("body, status, text", [
    ({"model": "net", "messages": "hi"}, 400, "non-empty list"),
    ({"model": "net", "messages": [{"role": "user", "content": 3}]}, 400, "text parts"),
    ({"model": "net", "messages": [{"role": "user", "content": "1"}], "choices": 5}, 400, "choices"),
    ({"model": "other", "messages": [{"role": "user", "content": "1"}]}, 404, "does not exist"),
    ({"model": "net", "messages": [{"role": "user", "content": "1"}], "prompt_field": "x", "n": 3}, 400, "n must be 1"),
])
def test_bad_requests_get_openai_style_errors(body, status, text):
    (r,) = call([("POST", "chat/completions", {"json": body})])
    assert r.status_code == status and text in r.json()["error"]["message"]
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_spent_budget_is_503_with_the_reason_and_a_wrong_key_401():
    (r,) = call([chat("2 + 5", answer="7")], max_cost=0.0)
    assert r.status_code == 503 and "BudgetExceeded" in r.json()["error"]["message"]
    ok, bad = call([("GET", "models", {"headers": {"Authorization": "Bearer k1"}}),
                    ("GET", "models", {"headers": {"Authorization": "Bearer k2"}})], api_key="k1")
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "net" and bad.status_code == 401


def test_unknown_routes_wrong_methods_and_bad_json_are_openai_errors():
    missing, wrong, bad, array = call([("GET", "nowhere", {}), ("GET", "chat/completions", {}),
                                       ("POST", "chat/completions", {"content": b"{not json"}),
                                       ("POST", "completions", {"json": [1, 2]})])
    assert (missing.status_code, wrong.status_code, bad.status_code, array.status_code) == (404, 405, 400, 400)
    assert "takes POST" in wrong.json()["error"]["message"] and "not valid JSON" in bad.json()["error"]["message"]
    assert "JSON object" in array.json()["error"]["message"]


def test_the_asgi_lifespan_opens_and_closes_the_shared_session():
    app = create_app(loads_network(NET))
    sent = []

    async def main():
        inbox = asyncio.Queue()
        for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
            inbox.put_nowait(message)

        async def send(message):
            sent.append((message["type"], app.session is not None and not app.session.closed))

        await app({"type": "lifespan"}, inbox.get, send)

    asyncio.run(main())
    assert sent == [("lifespan.startup.complete", True), ("lifespan.shutdown.complete", False)]


def test_an_unexpected_failure_is_a_500_with_the_reason(monkeypatch):
    app = create_app(loads_network(NET))

    async def broken(query):
        raise KeyError("boom")

    async def main():
        async with app.lifespan():
            monkeypatch.setattr(app.session, "ainvoke", broken)
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t/v1/") as c:
                return await c.post("chat/completions", json={"messages": [{"role": "user", "content": "1"}]})

    r = asyncio.run(main())
    assert r.status_code == 500 and "KeyError" in r.json()["error"]["message"]


def test_a_body_over_the_limit_is_refused_with_413(monkeypatch):
    from llmnet.integrations import openai_server

    monkeypatch.setattr(openai_server, "MAX_BODY_BYTES", 1000)

    async def chunks():  # a streamed (chunked) body, so the app reads it in parts
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}]}'

    big, small = call([("POST", "chat/completions", {"content": chunks()}), chat("2 + 5", answer="7")])
    assert big.status_code == 413 and "over" in big.json()["error"]["message"] and small.status_code == 200
