"""What one ``n=K`` request saves, and what llmnet's client costs, against a loopback server.

A Vote-K network over Q arithmetic queries runs two ways against
``experiments/fake_openai_server.py`` (which honours ``n`` and counts requests and prompt
tokens, prefilling once per request as vLLM does):

- ``vllm``: the vllm backend, one request with ``n=K, seed`` per query;
- ``plain``: the openai backend with ``supports_n: false``, K requests of ``n=1`` per query.

Reported, as medians over repetitions:

- ``requests_ratio`` and ``prompt_tokens_ratio``: vllm / plain, as counted by the server
  (target 1/K);
- ``client_overhead_ratio``: llmnet's wall time per request divided by a bare
  ``openai.AsyncOpenAI`` client's, sending the same requests with the same concurrency in
  the same run (target <= 1.2), the worse of the two paths. llmnet's time covers the whole
  ``run_network`` (backend set-up, limits, retry bookkeeping, answer extraction, votes,
  usage); the bare client's, creating the client, the requests and closing it. Each
  llmnet run is paired with the bare run beside it and the ratio is the median over pairs.

The fake server answers sample ``j`` of a request with seed ``s`` as a request with seed
``s + j`` would be answered, so both paths must reach the same accuracy; the script checks it.

Run: ``python experiments/bench_requests.py --json results/bench_requests.json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai

from llmnet import loads_network
from llmnet.execute import RunConfig, run_network
from llmnet.network.templates import render
from llmnet.tasks.datasets import load_dataset

SERVER = Path(__file__).with_name("fake_openai_server.py")
PROMPT = "Question: 2 + 3\nAnswer: 5\nQuestion: 14 + 7\nAnswer: 21\nQuestion: {question}\nAnswer:"
NETWORK = """
name: bench-{path}-{k}
models:
  m:
    backend: {backend}
    model: fake
    base_url: {base_url}
    limits: {{concurrency: {concurrency}, retries: 0, timeout: 60}}
    {extra}
task:
  prompt: {prompt}
  answer: {{kind: number}}
nodes:
  gen: {{kind: generator, model: m, samples: {k}, temperature: 0.7, max_tokens: 8, stop: ["\\n"]}}
  vote: {{kind: vote, inputs: [gen]}}
output: vote
"""
PATHS = {"vllm": ("vllm", ""), "plain": ("openai", "supports_n: false")}


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def server_stats(url: str, reset: bool = False) -> dict:
    if reset:
        return httpx2.post(f"{url}/reset").json()
    return httpx2.get(f"{url}/stats").json()


def run_llmnet(url: str, path: str, k: int, queries, concurrency: int) -> dict:
    backend, extra = PATHS[path]
    network = loads_network(NETWORK.format(path=path, k=k, backend=backend, base_url=f"{url}/v1", extra=extra,
                                           concurrency=concurrency, prompt=json.dumps(PROMPT)))
    server_stats(url, reset=True)
    started = time.perf_counter()
    report = run_network(network, queries, RunConfig(concurrency=concurrency, progress=False))
    seconds = time.perf_counter() - started
    stats = server_stats(url)
    if report.summary["errors"]:
        raise RuntimeError(f"{path} K={k}: {report.summary['errors']} queries failed")
    return {"seconds": seconds, "requests": stats["requests"], "prompt_tokens": stats["prompt_tokens"],
            "samples": stats["samples"], "accuracy": report.summary["accuracy"]}


async def bare_client(url: str, path: str, k: int, queries, concurrency: int) -> dict:
    """The same requests through a bare ``openai.AsyncOpenAI``: the floor llmnet is measured against.

    Timed like ``run_network``: from creating the client to closing it.
    """
    prompts = [render(PROMPT, q.template_values()) for q in queries]
    shapes = [(p, 0, k) for p in prompts] if path == "vllm" else [(p, j, 1) for p in prompts for j in range(k)]
    server_stats(url, reset=True)
    started = time.perf_counter()
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0, timeout=60)
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str, seed: int, n: int) -> None:
        async with gate:
            extra = {"n": n} if n > 1 else {}
            await client.completions.create(model="fake", prompt=prompt, seed=seed, temperature=0.7, top_p=1.0,
                                            max_tokens=8, stop=["\n"], **extra)

    await asyncio.gather(*(one(*shape) for shape in shapes))
    await client.close()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "requests": server_stats(url)["requests"]}


def bench_k(url: str, k: int, queries, concurrency: int, reps: int) -> dict:
    runs: dict[str, list[dict]] = {"vllm": [], "plain": [], "bare_vllm": [], "bare_plain": []}
    for rep in range(reps):  # alternate the order, so warm-up and drift fall on both sides
        for path in ("plain", "vllm")[:: 1 if rep % 2 == 0 else -1]:
            for bare in (True, False)[:: 1 if rep % 2 == 0 else -1]:
                if bare:
                    runs["bare_" + path].append(asyncio.run(bare_client(url, path, k, queries, concurrency)))
                else:
                    runs[path].append(run_llmnet(url, path, k, queries, concurrency))
    med = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0] if key != "accuracy"}
           for name, rs in runs.items()}
    accuracy = {path: runs[path][0]["accuracy"] for path in ("vllm", "plain")}
    if accuracy["vllm"] != accuracy["plain"]:
        raise RuntimeError(f"K={k}: the n=K path and the per-sample path disagree: {accuracy}")
    per_request = {name: m["seconds"] / m["requests"] for name, m in med.items()}
    # each llmnet run is paired with the bare run next to it in time (same request count):
    # the median of the paired ratios cancels the drift of a shared, busy machine
    overhead = {path: statistics.median(a["seconds"] / b["seconds"] for a, b in zip(runs[path], runs["bare_" + path]))
                for path in ("vllm", "plain")}
    return {
        "k": k,
        "requests": {path: med[path]["requests"] for path in ("vllm", "plain")},
        "prompt_tokens": {path: med[path]["prompt_tokens"] for path in ("vllm", "plain")},
        "requests_ratio": med["vllm"]["requests"] / med["plain"]["requests"],
        "prompt_tokens_ratio": med["vllm"]["prompt_tokens"] / med["plain"]["prompt_tokens"],
        "target_ratio": 1 / k,
        "seconds": {name: round(m["seconds"], 4) for name, m in med.items()},
        "ms_per_request": {name: round(1000 * v, 4) for name, v in per_request.items()},
        "client_overhead_ratio": round(max(overhead.values()), 4),
        "client_overhead_ratio_by_path": {path: round(v, 4) for path, v in overhead.items()},
        "accuracy": accuracy["vllm"],
        "seconds_per_rep": {name: [round(r["seconds"], 4) for r in rs] for name, rs in runs.items()},
    }


def print_table(results: list[dict]) -> None:
    print(f"{'K':>3} {'path':>6} {'requests':>9} {'prompt tok':>11} {'llmnet ms/req':>14} {'bare ms/req':>12} "
          f"{'overhead':>9}")
    for r in results:
        for path in ("plain", "vllm"):
            print(f"{r['k']:>3} {path:>6} {r['requests'][path]:>9} {r['prompt_tokens'][path]:>11} "
                  f"{r['ms_per_request'][path]:>14.3f} {r['ms_per_request']['bare_' + path]:>12.3f} "
                  f"{r['client_overhead_ratio_by_path'][path]:>9.3f}")
        print(f"    requests ratio {r['requests_ratio']:.4f}  prompt-token ratio {r['prompt_tokens_ratio']:.4f}  "
              f"(target 1/K = {r['target_ratio']:.4f})  accuracy {r['accuracy']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="n=K requests vs per-sample requests; llmnet vs a bare client")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, nargs="+", default=[5, 25])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    parser.add_argument("--concurrency", type=int, default=32, help="requests (and queries) in flight")
    args = parser.parse_args(argv)
    if args.smoke:
        args.queries, args.k, args.reps = 10, [3], 1
    queries = load_dataset("arithmetic", limit=args.queries, seed=0)
    proc, url = start_server()
    try:
        results = [bench_k(url, k, queries, args.concurrency, args.reps) for k in args.k]
    finally:
        proc.terminate()
        proc.wait(10)
    print_table(results)
    out = {"benchmark": "bench_requests", "queries": args.queries, "reps": args.reps,
           "concurrency": args.concurrency, "statistic": "median over reps", "results": results,
           "machine": {"python": platform.python_version(), "platform": platform.platform(),
                       "openai": openai.__version__},
           "command": "python " + " ".join(["experiments/bench_requests.py", *(argv or sys.argv[1:])])}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
