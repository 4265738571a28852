"""A loopback OpenAI-compatible server for benchmarks: honours ``n``, counts what it is asked.

It answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` with ``n`` choices,
each a number: the sum of the integers in the prompt's last ``Question:`` line with
probability ``--p-correct``, otherwise that sum plus or minus a small offset, drawn from a
hash of (prompt, seed + choice index): answers are reproducible, a vote has something to
do, and one request with ``n=K, seed=s`` returns exactly what K requests with seeds
s, ..., s+K-1 return, so the n=K path and the per-sample path must agree. It prefills
like a real server: prompt tokens are counted once per request, however large ``n`` is.
Tokens are whitespace-separated words (plus one).

``GET /stats`` returns the counters (requests, samples, prompt_tokens,
completion_tokens), ``POST /reset`` zeroes them, ``GET /health`` and ``GET /v1/models``
answer as vLLM does. ``--latency`` adds a fixed service time per request.

Run: ``python experiments/fake_openai_server.py --port 0`` prints ``READY <port>`` once
it listens. A raw asyncio HTTP/1.1 server with keep-alive, so that the server costs as
little as possible of the time a client benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import struct
import sys
import time

_QUESTION = re.compile(r"Question:([^\n]*)\s*(?:Answer:)?\s*$")
_INT = re.compile(r"-?\d+")


def _uniform(*parts: object) -> float:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] / 2**64


def tokens(text: str) -> int:
    return len(text.split()) + 1


def answer(prompt: str, seed: int, p_correct: float) -> str:
    match = _QUESTION.search(prompt)
    truth = sum(int(x) for x in _INT.findall(match.group(1))) if match else 0
    if _uniform(prompt, seed, "ok") < p_correct:
        return f" {truth}"
    offset = 1 + int(_uniform(prompt, seed, "off") * 3)
    return f" {truth + offset if _uniform(prompt, seed, 'sign') < 0.5 else truth - offset}"


class FakeOpenAI:
    def __init__(self, p_correct: float, latency: float):
        self.p_correct = p_correct
        self.latency = latency
        self.reset()

    def reset(self) -> None:
        self.stats = {"requests": 0, "samples": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def complete(self, path: str, body: dict) -> dict:
        chat = path.endswith("/chat/completions")
        if chat:
            prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        else:
            prompt = body.get("prompt", "")
            prompt = prompt[0] if isinstance(prompt, list) else str(prompt)
        n = int(body.get("n") or 1)
        seed = int(body.get("seed") or 0)
        texts = [answer(prompt, seed + j, self.p_correct) for j in range(n)]
        prompt_tokens = tokens(prompt)
        completion_tokens = sum(tokens(t) for t in texts)
        self.stats["requests"] += 1
        self.stats["samples"] += n
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["completion_tokens"] += completion_tokens
        if chat:
            choices = [{"index": j, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                       for j, t in enumerate(texts)]
        else:
            choices = [{"index": j, "text": t, "finish_reason": "stop", "logprobs": None} for j, t in enumerate(texts)]
        return {"id": f"cmpl-{self.stats['requests']}", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": body.get("model", "fake"), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    async def route(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        path = path.split("?", 1)[0]
        if method == "POST" and path.endswith("/completions"):
            if self.latency:
                await asyncio.sleep(self.latency)
            try:
                return 200, self.complete(path, json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                return 400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}}
        if method == "GET" and path == "/stats":
            return 200, dict(self.stats)
        if method == "POST" and path == "/reset":
            self.reset()
            return 200, {"ok": True}
        if method == "GET" and path == "/health":
            return 200, {}
        if method == "GET" and path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "llmnet"}]}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                status, payload = await self.route(method, path, body)
                data = json.dumps(payload).encode()
                writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                             f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
                             f"connection: keep-alive\r\n\r\n".encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def serve(host: str, port: int, p_correct: float, latency: float, smoke: bool = False) -> None:
    app = FakeOpenAI(p_correct, latency)
    server = await asyncio.start_server(app.handle, host, port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    if smoke:  # one real request over loopback, then stop
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /v1/models HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        server.close()
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"smoke request failed: {head[:80]!r}")
        print("smoke: GET /v1/models -> 200", flush=True)
        return
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--p-correct", type=float, default=0.6)
    parser.add_argument("--smoke", action="store_true", help="answer one request from itself and exit (the test suite runs this)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds of service time per request")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.p_correct, args.latency, args.smoke))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
