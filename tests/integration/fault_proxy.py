"""A loopback HTTP reverse proxy that injects faults in front of a real OpenAI-compatible server.

Each completion request (POST ``.../completions``) gets a number, 0, 1, 2, ... in arrival
order; a *schedule* maps (number, JSON body) to a :class:`Fault` or ``None`` (forward it).
A faulted request is never forwarded, so the server computes only what the client
asked for: ``completed`` (forwarded requests answered 200 and delivered) and ``samples``
(choices in those answers) are what the client was served. On a busy machine a real
request can outlast the client's timeout; the server's answer then reaches nobody and
is counted in ``abandoned`` instead (the client retries it: a retry the schedule did
not cause).

Faults: 429 with ``Retry-After``; a 5xx status; a response held longer than the client's
timeout (not forwarded if the client hangs up first); a dropped connection (closed with
no answer); a malformed JSON body (200, ``application/json``, truncated).

The proxy runs its own event loop in a thread, so a blocking ``run_network`` can be
pointed at it. Other routes (``/v1/models``, ``/health``) are forwarded untouched.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx2


@dataclass(frozen=True)
class Fault:
    kind: str                     # "status" | "slow" | "drop" | "malformed"
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0


def rate_limited(retry_after: str | None = "0.05") -> Fault:
    return Fault("status", 429, retry_after=retry_after)


def server_error(status: int = 503, retry_after: str | None = None) -> Fault:
    return Fault("status", status, retry_after=retry_after)


def slow(delay: float) -> Fault:
    return Fault("slow", delay=delay)


def dropped() -> Fault:
    return Fault("drop")


def malformed() -> Fault:
    return Fault("malformed")


Schedule = Callable[[int, dict], "Fault | None"]


def at(numbers: dict[int, Fault]) -> Schedule:
    """Faults on given request numbers, e.g. ``at({1: dropped(), 4: dropped()})``."""
    return lambda number, body: numbers.get(number)


def when_prompt_contains(text: str, fault: Fault) -> Schedule:
    """The same fault on every request whose prompt contains ``text`` (outlasts any retry budget)."""

    def schedule(number: int, body: dict) -> Fault | None:
        prompt = body.get("prompt") or json.dumps(body.get("messages", ""))
        return fault if text in str(prompt) else None

    return schedule


class FaultProxy:
    """``with FaultProxy("http://127.0.0.1:8000", schedule) as proxy: proxy.url ...``"""

    def __init__(self, upstream: str, schedule: Schedule | None = None):
        self.upstream = upstream.rstrip("/")
        self.schedule: Schedule = schedule or (lambda number, body: None)
        self.received = 0          # completion requests that arrived
        self.forwarded = 0         # completion requests sent to the server
        self.completed = 0         # ... that the server answered with 200, delivered to the client
        self.abandoned = 0         # ... answered with 200 after the client had hung up
        self.samples = 0           # choices in the delivered answers
        self.prompt_tokens = 0     # usage.prompt_tokens in those answers
        self.faults: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, schedule: Schedule | None = None) -> None:
        """Zero the counters and the request numbering; install a new schedule."""
        with self._lock:
            self.schedule = schedule or (lambda number, body: None)
            self.received = self.forwarded = self.completed = self.abandoned = self.samples = 0
            self.prompt_tokens = 0
            self.faults = Counter()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FaultProxy":
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._client = httpx2.AsyncClient(timeout=120)
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.run_until_complete(self._client.aclose())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                if not await self._serve_one(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _serve_one(self, request: "_Request", reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        fault = None
        is_completion = request.method == "POST" and request.path.rstrip("/").endswith("/completions")
        if is_completion:
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                body = {}
            with self._lock:
                number = self.received
                self.received += 1
                fault = self.schedule(number, body)
                if fault is not None:
                    self.faults[fault.kind if fault.kind != "status" else str(fault.status)] += 1
        if fault is not None and fault.kind == "drop":
            return False
        if fault is not None and fault.kind == "status":
            headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
            payload = {"error": {"message": f"injected fault {fault.status}", "type": "fault_proxy"}}
            await _respond(writer, fault.status, json.dumps(payload).encode(), headers)
            return True
        if fault is not None and fault.kind == "malformed":
            await _respond(writer, 200, b'{"id": "cmpl-x", "choices": [{"text": "1', {})
            return True
        if fault is not None and fault.kind == "slow":
            try:  # the client hanging up ends the wait: nothing is forwarded for nobody
                if await asyncio.wait_for(reader.read(1), fault.delay) == b"":
                    return False
            except asyncio.TimeoutError:
                pass
        if is_completion:
            with self._lock:
                self.forwarded += 1
        upstream = await self._client.request(request.method, self.upstream + request.path, content=request.body,
                                              headers={k: v for k, v in request.headers.items()
                                                       if k not in ("host", "content-length", "connection")})
        if is_completion and upstream.status_code == 200 and _hung_up(reader, writer):
            with self._lock:  # the client gave up (its own timeout): computed, never delivered
                self.abandoned += 1
            return False
        if is_completion and upstream.status_code == 200:
            try:
                data = upstream.json()
                choices, tokens = len(data.get("choices", [])), int(data.get("usage", {}).get("prompt_tokens", 0))
            except (ValueError, AttributeError, TypeError):
                choices, tokens = 0, 0
            with self._lock:
                self.completed += 1
                self.samples += choices
                self.prompt_tokens += tokens
        await _respond(writer, upstream.status_code, upstream.content,
                       {"content-type": upstream.headers.get("content-type", "application/json")})
        return True


def _hung_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    return reader.at_eof() or reader.exception() is not None or writer.is_closing()


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return _Request(method, path, headers, body)


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]) -> None:
    head = [f"HTTP/1.1 {status} {'OK' if status < 400 else 'Fault'}", f"content-length: {len(body)}",
            "connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in {"content-type": "application/json", **headers}.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
