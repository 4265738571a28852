"""What the HTTP layer of ``llmnet serve`` costs: requests/s through the server vs ``ainvoke`` directly.

The same simulated network (a rule gate; one branch a single call, the other a 5-sample
vote) answers the same distinct queries at 64 concurrent clients, two ways, side by side:

* direct: 64 tasks calling ``Session.ainvoke`` in this process;
* served: ``llmnet serve`` in its own process on loopback, 64 tasks posting
  ``/v1/chat/completions`` with aiohttp (one pooled client, keep-alive). The load generator
  is aiohttp because an httpx client tops out near 400 requests/s on this machine, which
  would measure the client, not the server.

Each model call of the simulated backend sleeps ``latency`` seconds (a stand-in for a real
model's response time; 0 measures the pure overhead). Reported per latency: median
requests/s of each over ``--reps`` repetitions (alternating), the ratio served/direct and the
HTTP layer's cost, 1 - ratio (goal: < 20% at 64 clients). Simulated: a check of llmnet's
machinery, not a result about any model. No cache on either side (every request pays its calls).

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

import httpx2

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


async def pump(items: list[dict], clients: int, call) -> float:
    """requests/s with ``clients`` workers sharing one queue of items."""
    it = iter(items)

    async def worker():
        for item in it:
            await call(item)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(items) / (time.perf_counter() - start)


async def direct_rps(text: str, items: list[dict], clients: int) -> float:
    async with Session(loads_network(text), concurrency=clients) as session:
        return await pump(items, clients, session.ainvoke)


async def served_rps(url: str, items: list[dict], clients: int) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url + "/", connector=connector) as client:
        async def call(item):
            body = {"model": "bench-serve", "messages": [{"role": "user", "content": item["question"]}],
                    "id": item["id"], "answer": item["answer"]}
            async with client.post("chat/completions", json=body) as reply:
                text = await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"server answered {reply.status}: {text[:200]!r}")

        return await pump(items, clients, call)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, file: Path):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "llmnet", "serve", str(file), "--port", str(self.port),
                                      "--no-cache", "--concurrency", "100000"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llmnet serve exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx2.get(self.url + "/models", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("llmnet serve did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def measure(latency: float, n: int, clients: int, reps: int, tmp: Path) -> dict:
    text = NETWORK.format(latency=latency)
    file = tmp / f"bench_serve_{latency}.yaml"
    file.write_text(text)
    server = Server(file)
    try:
        asyncio.run(served_rps(server.url, queries(min(n, 64), 10**6), clients))  # warm up the connections
        direct, served = [], []
        for rep in range(reps):  # alternate, so drift in the machine's load hits both alike
            direct.append(asyncio.run(direct_rps(text, queries(n, rep * n), clients)))
            served.append(asyncio.run(served_rps(server.url, queries(n, rep * n), clients)))
    finally:
        server.stop()
    d, s = statistics.median(direct), statistics.median(served)
    return {"latency_s": latency, "queries": n, "clients": clients, "reps": reps, "direct_rps": direct,
            "served_rps": served, "direct_rps_median": d, "served_rps_median": s, "ratio": s / d,
            "http_overhead": 1 - s / d}


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
    out = {"benchmark": "bench_serve", "simulated": True, "goal": "http_overhead < 0.20 at 64 clients",
           "cpus": os.cpu_count(), "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(f"latency {r['latency_s']}s: direct {r['direct_rps_median']:.0f} req/s, served "
              f"{r['served_rps_median']:.0f} req/s, HTTP layer costs {r['http_overhead']:.1%}")


if __name__ == "__main__":
    main()
