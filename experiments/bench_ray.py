"""Ray-sharded runs against the local executor: throughput at 1, 2 and 4 workers, overhead per sample.

A Vote-K network on the simulated backend (50 ms a call, K samples in one call) runs over Q
queries, with the per-sample cache on, four ways in one process, side by side:

- ``local``: the ordinary executor (``run_network``), Q in flight up to ``--concurrency``;
- ``ray-W`` for W in 1, 2, 4: the same run with ``RunConfig(ray=RayOptions(workers=W))`` on
  a local Ray started here (one node, ``--ray-cpus`` CPUs). The model's limits are split
  over the workers (``llmnet.execute.cluster``), so the cluster keeps the same budget.

Reported, medians over ``--reps``:

- ``samples_per_s``: samples delivered per second of wall time, the whole ``run_network``
  included (for Ray: spawning the workers and the cache actor, and closing them);
- ``throughput_ratio``: ray-W / local;
- ``overhead_ms_per_sample``: (ray-W wall - local wall) / samples, the price of shipping
  queries, records and every cache read and write between processes;
- ``startup_s``: the wall time of a run of W queries only, i.e. mostly starting the workers;
- ``steady_samples_per_s`` and ``steady_overhead_ms_per_sample``: the same once the workers are
  up (the run's wall less ``startup_s``, per sample beyond the first W queries'), against the
  local executor's wall per sample.

Every Ray run's results are checked equal to the local run's (answers and samples).
The simulated backend is for benchmarks only: these numbers are about llmnet's executor
and Ray, not about any model.

Run: ``python experiments/bench_ray.py --json experiments/out/bench_ray.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmnet import loads_network
from llmnet.execute import RunConfig, run_network
from llmnet.execute.cluster import RayOptions
from llmnet.tasks.query import Query

NETWORK = """
name: bench-ray
models:
  sim: {{backend: simulated, model: s, latency_s: {latency}, limits: {{concurrency: {concurrency}}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes:
  gen: {{kind: generator, model: sim, samples: {k}}}
  vote: {{kind: vote, inputs: [gen]}}
"""


def timed_run(network, queries, concurrency: int, ray) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(cache_path=Path(tmp) / "c.sqlite", concurrency=concurrency, progress=False, ray=ray)
        started = time.perf_counter()
        report = run_network(network, queries, config)
        wall = time.perf_counter() - started
    if report.summary["errors"]:
        raise SystemExit(f"errors in a benchmark run: {report.summary['errors']}")
    return wall, [(r["id"], r["answer"], r["trace"]["gen"]["answers"]) for r in report.results]


def _steady(row: dict, workers: int, k: int, samples: int) -> float:
    """Samples per second once the workers are up: the run's wall less a W-query run's, per extra sample."""
    extra = statistics.median(row["walls"]) - statistics.median(row["startup"])
    return (samples - workers * k) / max(extra, 1e-9)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Ray-sharded runs vs the local executor")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per simulated call")
    parser.add_argument("--concurrency", type=int, default=64, help="queries (and the model's calls) in flight")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--ray-cpus", type=int, default=4, help="CPUs the local Ray advertises")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: what the test suite runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.queries, args.workers, args.reps = 24, [1, 2], 1
    try:
        import ray
    except ImportError:
        raise SystemExit("needs ray: pip install 'llmnet-compound[ray]'") from None

    network = loads_network(NETWORK.format(latency=args.latency, concurrency=args.concurrency, k=args.k))
    queries = [Query(f"q{i}", f"{i} + {i % 97}", str(i + i % 97)) for i in range(args.queries)]
    samples = args.queries * args.k
    # a shared machine: Ray's memory monitor would kill our workers for other processes' memory
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    ray.init(num_cpus=args.ray_cpus, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    try:
        local_walls, rows = [], {w: {"walls": [], "startup": []} for w in args.workers}
        for _ in range(args.reps):
            wall, expected = timed_run(network, queries, args.concurrency, None)
            local_walls.append(wall)
            for w in args.workers:
                options = RayOptions(workers=w, cpus_per_worker=args.ray_cpus / max(args.workers))
                wall, got = timed_run(network, queries, args.concurrency, options)
                if got != expected:
                    raise SystemExit(f"ray-{w} results differ from the local run's")
                rows[w]["walls"].append(wall)
                rows[w]["startup"].append(timed_run(network, queries[:w], args.concurrency, options)[0])
    finally:
        ray.shutdown()
    local = statistics.median(local_walls)
    results = [{"workers": w, "wall_s": round(statistics.median(r["walls"]), 4),
                "samples_per_s": round(samples / statistics.median(r["walls"]), 1),
                "throughput_ratio": round(local / statistics.median(r["walls"]), 4),
                "overhead_ms_per_sample": round((statistics.median(r["walls"]) - local) / samples * 1e3, 4),
                "startup_s": round(statistics.median(r["startup"]), 3),
                "steady_samples_per_s": round(_steady(r, w, args.k, samples), 1),
                "steady_overhead_ms_per_sample": round((1 / _steady(r, w, args.k, samples) - local / samples) * 1e3, 4)}
               for w, r in rows.items()]
    out = {"queries": args.queries, "k": args.k, "samples": samples, "latency_s": args.latency,
           "concurrency": args.concurrency, "reps": args.reps, "smoke": args.smoke,
           "local": {"wall_s": round(local, 4), "samples_per_s": round(samples / local, 1)}, "ray": results,
           "machine": {"python": platform.python_version(), "platform": platform.platform(),
                       "cpus": os.cpu_count(), "ray": ray.__version__,
                       "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}},
           "command": " ".join(["python", "experiments/bench_ray.py", *(argv if argv is not None else sys.argv[1:])])}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"local": out["local"], "ray": results}, indent=2))


if __name__ == "__main__":
    main()
