"""What the HTTP layer of ``llmnet serve`` costs: requests/s through the server vs ``ainvoke`` directly.

The same simulated network (a rule gate; one branch a single call, the other a 5-sample
vote) answers the same distinct queries at 64 concurrent clients, two ways, side by side:

* direct: 64 tasks calling ``Session.ainvoke`` in this process;
* served: ``llmnet serve`` (uvicorn, the plain ASGI app) in its own process on loopback, 64
  tasks each posting ``/v1/chat/completions`` over its own keep-alive HTTP/1.1 connection.
  The load generator is a minimal asyncio protocol sending pre-encoded requests (it checks
  each reply's status and that its ``llmnet.id`` is the query's): aiohttp cost 0.2-0.3 ms of
  CPU per request and an httpx client more, which on a 2-core machine is CPU taken from the
  server and charged to the HTTP layer.

All three event loops (direct, server, load generator) are uvloop when it is installed (the
``serve`` extra brings it; uvicorn picks it), so the served side gets no faster loop than the
direct one. Each model call of the simulated backend sleeps ``latency`` seconds (a stand-in
for a model's response time; 0 measures the pure overhead).

What is measured, per latency, medians over ``--reps`` repetitions run alternately:

* ``direct_rps`` / ``served_rps`` (wall clock) and ``http_overhead`` = 1 - served/direct
  (goal: < 20% at 64 clients). End to end: on a machine with fewer free cores than the
  three processes want, the load generator's CPU competes with the server's.
* CPU per request (``cpu_ms``): the direct process; the server process (psutil; the network's
  own work plus HTTP); the load generator. ``server_http_cpu_ms`` = server - direct is the
  HTTP layer's own CPU per request, and ``cpu_bound_overhead`` = 1 - direct/server the share
  of a CPU-bound server's throughput it costs, with no load generator charged to it.
* Where the HTTP layer's CPU goes: ``cpu_ms.uvicorn_floor`` (a third arm of each rep), the
  server CPU per request of uvicorn serving an app that only waits as long as the model call,
  parses the body and answers its id (``FLOOR_APP``): what any uvicorn JSON server pays for
  HTTP, sockets and the event loop at that pace; and, once per run, ``app_own_cpu_ms``, the
  ASGI app's own work with the network taken out (in process, no sockets).

Simulated: a check of llmnet's machinery, not a result about any model. No cache on either
side (every request pays its calls).

    python experiments/bench_serve.py --json experiments/out/bench_serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

try:
    import uvloop
except ImportError:  # the serve extra brings it; without it every side runs asyncio's own loop
    uvloop = None

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmnet import loads_network  # noqa: E402
from llmnet.execute import Session  # noqa: E402

NETWORK = """
name: bench-serve
models:
  sim: {{backend: simulated, model: s, skill: 0.7, latency_s: {latency}, limits: {{concurrency: 1000}}}}
task: {{prompt: "Question: {{question}}\\nAnswer:", answer: {{kind: number}}}}
subgraphs:
  cheap: {{nodes: {{one: {{kind: generator, model: sim}}}}}}
  voted:
    nodes:
      gen: {{kind: generator, model: sim, samples: 5}}
      vote: {{kind: vote, inputs: [gen]}}
    output: vote
nodes:
  route:
    kind: gate
    router: {{kind: rule, rules: [{{field: question_length, op: gt, value: 7, branch: strong}}], default: cheap}}
    branches: {{cheap: cheap, strong: voted}}
"""


def queries(n: int, offset: int) -> list[dict]:
    return [{"id": f"b{offset}-{i}", "question": f"{i} + {offset + i * 37}", "answer": str(offset + i * 38)}
            for i in range(n)]


def run(coro):
    """Run ``coro`` on the event loop the server gets too (uvloop when installed)."""
    return uvloop.run(coro) if uvloop is not None else asyncio.run(coro)


async def pump(items: list[dict], workers: list) -> float:
    """requests/s with one worker per callable in ``workers``, all sharing one queue of items."""
    it = iter(items)

    async def worker(call):
        for item in it:
            await call(item)

    start = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in workers))
    return len(items) / (time.perf_counter() - start)


async def direct_rps(text: str, items: list[dict], clients: int) -> float:
    async with Session(loads_network(text), concurrency=clients) as session:
        return await pump(items, [session.ainvoke] * clients)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time: the cheapest honest client."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        if at < 0:
            self.waiter.set_exception(RuntimeError(f"reply without content-length: {head[:200]!r}"))
            return
        stop = head.find(b"\r\n", at)
        total = end + 4 + int(head[at + 15:stop if stop > 0 else None])
        if len(self.buffer) >= total:
            status, body = int(head[9:12]), bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the server closed the connection ({exc})"))

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def chat_request(port: int, item: dict) -> bytes:
    body = json.dumps({"model": "bench-serve", "messages": [{"role": "user", "content": item["question"]}],
                       "id": item["id"], "answer": item["answer"]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def served_rps(port: int, items: list[dict], clients: int) -> float:
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(Connection, "127.0.0.1", port))[1] for _ in range(clients)]
    requests = {item["id"]: chat_request(port, item) for item in items}  # encoded before the clock starts

    def caller(conn: Connection):
        async def call(item):
            status, body = await conn.post(requests[item["id"]])
            if status != 200 or json.loads(body)["llmnet"]["id"] != item["id"]:
                raise RuntimeError(f"server answered {status}: {body[:200]!r}")
        return call

    try:
        return await pump(items, [caller(c) for c in connections])
    finally:
        for conn in connections:
            conn.transport.close()


FLOOR_APP = """
import asyncio, sys, orjson, uvicorn

LATENCY = float(sys.argv[2])


async def app(scope, receive, send):  # the least a JSON server does: read the body, parse it, answer with its id
    if scope["type"] != "http":
        return
    message = await receive()
    if LATENCY:
        await asyncio.sleep(LATENCY)  # as long as the network's one model call, so requests arrive at its pace
    body = orjson.dumps({"llmnet": {"id": orjson.loads(message["body"])["id"]}})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, proxy_headers=False,
            server_header=False, lifespan="off")
"""
"""uvicorn (same loop and HTTP parser as ``llmnet serve``) with an app that does no work but wait
as long as the network's model call: the CPU per request of any uvicorn JSON server at that
pace, the floor under the HTTP layer's cost."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``llmnet serve FILE`` (or, with ``floor_latency``, the do-nothing app) in its own process on loopback."""

    def __init__(self, file: Path | None, floor_latency: float | None = None):
        self.port = free_port()
        floor = floor_latency is not None
        command = ([sys.executable, "-c", FLOOR_APP, str(self.port), str(floor_latency)] if floor else
                   [sys.executable, "-m", "llmnet", "serve", str(file), "--port", str(self.port), "--no-cache",
                    "--concurrency", "100000"])
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not start")

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def timed(fn, *args) -> tuple[float, float]:
    """(what ``fn`` returns, CPU seconds this process spent in it)."""
    before = time.process_time()
    value = fn(*args)
    return value, time.process_time() - before


def measure(latency: float, n: int, clients: int, reps: int, tmp: Path) -> dict:
    text = NETWORK.format(latency=latency)
    file = tmp / f"bench_serve_{latency}.yaml"
    file.write_text(text)
    server, floor = Server(file), Server(None, floor_latency=latency)
    runs: dict[str, list[float]] = {k: [] for k in ("direct_rps", "served_rps", "floor_rps", "direct_cpu_ms",
                                                     "server_cpu_ms", "floor_cpu_ms", "client_cpu_ms")}
    try:
        for warm in (server, floor):
            run(served_rps(warm.port, queries(min(n, 256), 10**6), clients))
        for rep in range(reps):  # alternate, so drift in the machine's load hits all alike
            rps, cpu = timed(run, direct_rps(text, queries(n, rep * n), clients))
            runs["direct_rps"].append(rps)
            runs["direct_cpu_ms"].append(1000 * cpu / n)
            for name, target in (("served", server), ("floor", floor)):
                before = target.cpu_s()
                rps, cpu = timed(run, served_rps(target.port, queries(n, rep * n), clients))
                runs[f"{name}_rps"].append(rps)
                cpu_ms = 1000 * (target.cpu_s() - before) / n
                runs["server_cpu_ms" if name == "served" else "floor_cpu_ms"].append(cpu_ms)
                if name == "served":
                    runs["client_cpu_ms"].append(1000 * cpu / n)
    finally:
        server.stop()
        floor.stop()
    med = {k: statistics.median(v) for k, v in runs.items()}
    d, s = med["direct_rps"], med["served_rps"]
    return {"latency_s": latency, "queries": n, "clients": clients, "reps": reps, **runs,
            "direct_rps_median": d, "served_rps_median": s, "ratio": s / d, "http_overhead": 1 - s / d,
            "cpu_ms": {"direct": med["direct_cpu_ms"], "server": med["server_cpu_ms"],
                       "client": med["client_cpu_ms"], "uvicorn_floor": med["floor_cpu_ms"]},
            "server_http_cpu_ms": med["server_cpu_ms"] - med["direct_cpu_ms"],
            # None when the server's CPU clock did not tick (a few requests: psutil counts in 10 ms steps)
            "cpu_bound_overhead": 1 - med["direct_cpu_ms"] / med["server_cpu_ms"] if med["server_cpu_ms"] > 0 else None}


def measure_app_own(n: int) -> float:
    """CPU ms per request of the ASGI app's own work (routing, JSON in and out, the query, the
    reply) with the network taken out: in process, no sockets, ``ainvoke`` answering from one
    recorded result."""
    from llmnet.integrations.openai_server import create_app

    app = create_app(loads_network(NETWORK.format(latency=0.0)))
    bodies = [chat_request(0, item).split(b"\r\n\r\n", 1)[1] for item in queries(n, 0)]

    async def main() -> float:
        async with app.lifespan():
            recorded = await app.session.ainvoke(queries(1, 0)[0])

            async def answer(query):
                return recorded

            app.session.ainvoke = answer
            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}

            async def send(message):
                pass

            before = time.process_time()
            for body in bodies:
                async def receive(body=body):
                    return {"type": "http.request", "body": body, "more_body": False}
                await app(scope, receive, send)
            return 1000 * (time.process_time() - before) / n

    return run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="requests/s through llmnet serve vs ainvoke directly")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--queries", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05, 0.2],
                        help="seconds each simulated model call takes")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.queries, args.latency, args.reps = 64, [0.01], 1
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(lat, args.queries, args.clients, args.reps, Path(tmp)) for lat in args.latency]
    app_own = statistics.median(measure_app_own(args.queries) for _ in range(args.reps))
    out = {"benchmark": "bench_serve", "simulated": True, "goal": "http_overhead < 0.20 at 64 clients",
           "cpus": os.cpu_count(), "load_average": os.getloadavg(), "event_loop": "uvloop" if uvloop else "asyncio",
           "client": "raw asyncio HTTP/1.1, one keep-alive connection per client", "results": results,
           "app_own_cpu_ms": app_own}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        cpu = r["cpu_ms"]
        share = "n/a" if r["cpu_bound_overhead"] is None else f"{r['cpu_bound_overhead']:.1%}"
        print(f"latency {r['latency_s']}s: direct {r['direct_rps_median']:.0f} req/s, served "
              f"{r['served_rps_median']:.0f} req/s, HTTP layer costs {r['http_overhead']:.1%} end to end; CPU per "
              f"request: direct {cpu['direct']:.3f} ms, server {cpu['server']:.3f} ms (HTTP "
              f"{r['server_http_cpu_ms']:.3f} ms, {share} of a CPU-bound server), "
              f"load generator {cpu['client']:.3f} ms; uvicorn serving a do-nothing app at that pace "
              f"{cpu['uvicorn_floor']:.3f} ms")
    print(f"the app's own work (no network, no sockets): {app_own:.3f} ms of CPU per request")


if __name__ == "__main__":
    main()
