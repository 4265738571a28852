"""Executor benchmark: overhead, LangGraph, rate limits under latency, cache speed, memory.

    python experiments/bench_executor.py --json experiments/out/bench_executor.json [--smoke]

Everything runs on the simulated backend (a synthetic model: these are measurements of
llmnet's machinery, not of any real model). Each timing is the median of several
repetitions, measured side by side in the same process; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmnet import loads_network
from llmnet.backends.base import Request
from llmnet.backends.simulated import SimulatedBackend
from llmnet.execute import RunConfig, run_network
from llmnet.network.templates import render
from llmnet.nodes.base import Candidate, plurality, seeded_rng
from llmnet.tasks.datasets import arithmetic

NET = """
models: {sim: {backend: simulated, model: s, latency_s: %(latency)s, limits: {concurrency: %(conc)d %(rpm)s}}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: %(k)d}
  vote: {kind: vote, inputs: [gen]}
"""


def network(k=5, latency=0.0, conc=10_000, rpm=None):
    return loads_network(NET % {"k": k, "latency": latency, "conc": conc, "rpm": f", rpm: {rpm}" if rpm else ""})


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bare(net, queries, k):
    """The same backend calls with nothing around them: one asyncio.gather."""
    backend = SimulatedBackend("sim", net.spec.models["sim"])
    template = net.spec.task.prompt

    async def go():
        return await asyncio.gather(*(backend.complete(Request(render(template, q.template_values()), n=k,
                                                                query=q)) for q in queries))

    return asyncio.run(go())


def langgraph_run(net, queries, k):
    """The same network as a LangGraph StateGraph (generator node -> vote node), same backend."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    backend = SimulatedBackend("sim", net.spec.models["sim"])
    template = net.spec.task.prompt
    answer_spec = net.spec.task.answer
    from llmnet.tasks.answers import extract

    class State(TypedDict, total=False):
        query: object
        samples: list
        answer: str

    async def gen(state):
        q = state["query"]
        c = await backend.complete(Request(render(template, q.template_values()), n=k, query=q))
        return {"samples": [s.text for s in c.samples]}

    async def vote(state):
        cands = [Candidate(t, extract(answer_spec, t)) for t in state["samples"]]
        return {"answer": plurality(cands, lambda: seeded_rng(0, state["query"].id))}

    g = StateGraph(State)
    g.add_node("gen", gen)
    g.add_node("vote", vote)
    g.add_edge(START, "gen")
    g.add_edge("gen", "vote")
    g.add_edge("vote", END)
    app = g.compile()

    async def go():
        sem = asyncio.Semaphore(64)

        async def one(q):
            async with sem:
                return await app.ainvoke({"query": q})

        return await asyncio.gather(*(one(q) for q in queries))

    return asyncio.run(go())


def peak_rss_mb(n_queries: int) -> float:
    code = f"""
import resource, tempfile
from pathlib import Path
from llmnet import loads_network
from llmnet.tasks.datasets import arithmetic
from llmnet.execute import RunConfig, run_network
net = loads_network('''{NET % {"k": 1, "latency": 0.0, "conc": 10000, "rpm": ""}}''')
with tempfile.TemporaryDirectory() as d:
    rep = run_network(net, arithmetic({n_queries}), RunConfig(out_dir=Path(d), progress=False, keep_results=False,
                                                             concurrency=256))
    assert rep.summary["queries"] == {n_queries}, rep.summary
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("experiments/out/bench_executor.json"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what the test suite runs so the script cannot go stale")
    args = ap.parse_args()
    q = 0.01 if args.smoke else 1.0
    reps = 1 if args.smoke else args.reps
    k = 5
    n = int(20_000 * q) // k
    queries = arithmetic(n)
    net = network(k)
    cfg = RunConfig(progress=False, concurrency=256, keep_results=False)
    out: dict = {"machine_note": "simulated backend; medians of repetitions in one process", "samples": n * k}

    llm_t, llm_all = median_time(lambda: run_network(net, queries, cfg), reps)
    bare_t, bare_all = median_time(lambda: bare(net, queries, k), reps)
    out["overhead"] = {"llmnet_s": llm_t, "bare_s": bare_t, "overhead_ratio": llm_t / bare_t,
                       "target": "<= 1.5", "llmnet_runs": llm_all, "bare_runs": bare_all}
    print(f"1. overhead: llmnet {llm_t:.3f}s vs bare gather {bare_t:.3f}s -> ratio {llm_t / bare_t:.2f}")

    try:
        lg_t, lg_all = median_time(lambda: langgraph_run(net, queries, k), reps)
        out["langgraph"] = {"llmnet_s": llm_t, "langgraph_s": lg_t, "langgraph_ratio": llm_t / lg_t,
                            "target": "< 0.5", "langgraph_runs": lg_all}
        print(f"2. langgraph: llmnet {llm_t:.3f}s vs LangGraph {lg_t:.3f}s -> ratio {llm_t / lg_t:.2f}")
    except ImportError:
        out["langgraph"] = {"skipped": "langgraph not installed (pip install 'llmnet[bench]')"}
        print("2. langgraph: not installed")

    calls = int(4000 * q)
    limit_rps, conc = 200, 20
    lat_net = network(1, latency=0.05, conc=conc, rpm=limit_rps * 60)
    lat_q = arithmetic(calls, seed=7)
    fractions, max_in_flight = [], 0
    for _ in range(max(1, reps // 2)):
        t0 = time.perf_counter()
        rep = run_network(lat_net, lat_q, RunConfig(progress=False, concurrency=256, keep_results=False))
        dt = time.perf_counter() - t0
        fractions.append(calls / dt / limit_rps)
        max_in_flight = max(max_in_flight, rep.summary["max_in_flight"]["sim"])
    out["rate_limit"] = {"calls": calls, "limit_per_s": limit_rps, "latency_s": 0.05, "concurrency_cap": conc,
                         "rate_fraction": statistics.median(fractions), "runs": fractions,
                         "max_in_flight": max_in_flight, "cap_respected": max_in_flight <= conc,
                         "target": ">= 0.95 and cap respected"}
    print(f"3. rate: achieved/limit = {statistics.median(fractions):.3f}, max in flight {max_in_flight} <= {conc}")

    writes, reads = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as d:
            c = RunConfig(progress=False, concurrency=256, keep_results=False, cache_path=Path(d) / "c.sqlite")
            t0 = time.perf_counter()
            run_network(net, queries, c)
            t1 = time.perf_counter()
            rep = run_network(net, queries, c)
            t2 = time.perf_counter()
            assert rep.summary["cache_hits"] == n * k
            writes.append(n * k / (t1 - t0))
            reads.append(n * k / (t2 - t1))
    out["cache"] = {"samples": n * k, "write_samples_per_s": statistics.median(writes),
                    "read_samples_per_s": statistics.median(reads),
                    "cached_samples_per_s": min(statistics.median(writes), statistics.median(reads)),
                    "target": ">= 5000 both ways"}
    print(f"4. cache: write {statistics.median(writes):,.0f}/s, read {statistics.median(reads):,.0f}/s "
          f"(end-to-end runs incl. the network)")

    big = int(100_000 * q)
    rss = peak_rss_mb(big)
    out["memory"] = {"queries": big, "peak_rss_mb": rss, "target": "< 500 MB"}
    print(f"5. memory: peak RSS {rss:.0f} MB for {big:,} queries")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
