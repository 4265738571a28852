"""Ray sharding on a real two-node local Ray cluster (``ray.cluster_utils.Cluster``), no mocks.

One cluster for the module (starting one costs seconds): a head and a second node with one
CPU each, so the two workers land one per node. The network is simulated (latency, tokens,
prices), the executor, cache, results file and Ray are all real.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from llmnet import loads_network
from llmnet.execute import RunConfig, run_network
from llmnet.execute.cluster import RayOptions
from llmnet.tasks.query import Query
from tests.conftest import ROOT

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
psutil = pytest.importorskip("psutil", reason="needs psutil (dev extra) to find a worker to kill")

NETWORK = """
name: ray-vote
models: {{sim: {{backend: simulated, model: s, latency_s: {latency}, price: {{input: 1, output: 2}},
               limits: {{concurrency: 8, rpm: 60000}}}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes:
  gen: {{kind: generator, model: sim, samples: 3}}
  vote: {{kind: vote, inputs: [gen]}}
"""
QUERIES = [Query(f"q{i}", f"{i} + {i + 1}", str(2 * i + 1)) for i in range(40)]
TIMINGS = ("latency_s",)
MONITOR = "RAY_memory_monitor_refresh_ms"


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # the test machine is shared: Ray's memory monitor must not kill our workers for others' memory
    before = os.environ.get(MONITOR)
    os.environ[MONITOR] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if before is None:
            os.environ.pop(MONITOR, None)
        else:
            os.environ[MONITOR] = before


def network(latency: float = 0.02):
    return loads_network(NETWORK.format(latency=latency))


def without_timings(value):
    """A result record (or part of one) with every timing field removed."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_budget_shares_sum_to_the_models():
    from llmnet.execute.cluster import concurrency_share

    for total in (1, 7, 8, 64):
        for workers in (1, 2, 3, 5):
            parts = [concurrency_share(total, workers, i) for i in range(workers)]
            assert sum(parts) == max(total, workers) and max(parts) - min(parts) <= 1


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_nodes_give_the_local_results_and_resume_like_a_local_run(cluster, tmp_path):
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local = run_network(network(), QUERIES, RunConfig(out_dir=local_dir, cache_path=local_dir / "c.sqlite",
                                                      progress=False))
    options = RayOptions(workers=2)
    config = RunConfig(out_dir=ray_dir, cache_path=ray_dir / "c.sqlite", progress=False, ray=options)
    whole = run_network(network(), QUERIES, config)
    assert whole.summary["ray"]["nodes"] == 2 and whole.summary["ray"]["workers"] == 2
    assert whole.summary["calls"] == 40 and whole.summary["cache_hits"] == 0
    # a run killed half-way leaves the first lines: the same command resumes from them and runs the rest
    first = (ray_dir / "results.jsonl").read_text().splitlines()[:20]
    (ray_dir / "results.jsonl").write_text("".join(line + "\n" for line in first))
    full = run_network(network(), QUERIES, config)
    # nothing is paid twice: the resumed records keep their 20 calls, the rest's 60 samples come from the cache
    # (on Ray they are booked as cache hits; the local executor books a killed process's samples as paid)
    assert full.summary["calls"] == 20 and full.summary["cache_hits"] == 60
    assert (ray_dir / "results.jsonl").read_text().splitlines()[:20] == first  # resumed (timings and all), not rerun
    resumed, local_lines = lines(ray_dir / "results.jsonl"), lines(local_dir / "results.jsonl")
    assert [(r["id"], r["answer"], r["correct"], r["trace"]["gen"]["answers"]) for r in resumed] == \
        [(r["id"], r["answer"], r["correct"], r["trace"]["gen"]["answers"]) for r in local_lines]
    assert without_timings(lines(ray_dir / "results.jsonl"))[:20] == without_timings(local_lines)[:20]
    summary = json.loads((ray_dir / "summary.json").read_text())
    for field in ("queries", "accuracy", "correct", "samples", "errors"):
        assert summary[field] == local.summary[field], field
    # budgets are split over the workers, and said so
    assert summary["ray"]["per_worker_limits"]["sim"] == {"concurrency": [4, 4], "rpm": 30000.0, "tpm": None}
    assert summary["max_in_flight"]["sim"] <= 8


def test_max_cost_holds_for_the_whole_cluster(cluster, tmp_path):
    report = run_network(network(), QUERIES, RunConfig(out_dir=tmp_path, cache_path=tmp_path / "c.sqlite",
                                                       progress=False, max_cost=0.001, ray=RayOptions(workers=2)))
    s = report.summary
    assert s["stopped"] and "--max-cost" in s["stopped"] and not s["complete"]
    assert 0 < s["cost_usd"] <= 0.001 and s["queries"] < len(QUERIES)
    assert s["ray"]["per_worker_max_cost"] == 0.0005


def _kill_a_worker_after(results, finished: int, killed: list[int]) -> None:
    """SIGKILL one of this test's Ray shard workers once ``finished`` results are written."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.exists() and len(results.read_bytes().splitlines()) >= finished:
            break
        time.sleep(0.01)
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if (proc.info["name"] or "").startswith("ray::_ShardWorker") and \
                    any(p.pid == me for p in proc.parents()):
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return
        except psutil.Error:
            continue


def test_a_worker_killed_mid_run(cluster, tmp_path):
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    run_network(network(0.05), QUERIES, RunConfig(out_dir=local_dir, cache_path=local_dir / "c.sqlite",
                                                  progress=False))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_after, args=(ray_dir / "results.jsonl", 8, killed))
    killer.start()
    report = run_network(network(0.05), QUERIES, RunConfig(out_dir=ray_dir, cache_path=ray_dir / "c.sqlite",
                                                           progress=False, concurrency=8,
                                                           ray=RayOptions(workers=2)))
    killer.join()
    assert killed, "no worker was found to kill"
    s = report.summary
    assert s["complete"] and s["errors"] == 0 and s["queries"] == len(QUERIES)
    assert s["ray"]["worker_restarts"] >= 1
    ours, theirs = lines(ray_dir / "results.jsonl"), lines(local_dir / "results.jsonl")
    keep = ("id", "answer", "correct", "error", "truth", "samples")
    assert [{k: r[k] for k in keep} for r in ours] == [{k: r[k] for k in keep} for r in theirs]
    assert [r["trace"]["gen"]["answers"] for r in ours] == [r["trace"]["gen"]["answers"] for r in theirs]
    # nothing paid twice: a re-sent query found what the dead worker had paid in the driver's cache
    assert s["samples"] == 3 * len(QUERIES) and s["calls"] <= len(QUERIES)
    rows = sqlite3.connect(ray_dir / "c.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert rows == 3 * len(QUERIES)


def test_a_driver_killed_mid_run_resumes_like_a_local_run(cluster, tmp_path):
    """``kill -9`` of ``llmnet run --ray ADDRESS`` mid-run, then the same command: the local run's results."""
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK.format(latency=0.05))
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"

    def command(out, *extra):
        return [sys.executable, "-m", "llmnet", "run", str(net), "--data", "arithmetic:n=60,digits=2-3", "--out",
                str(out), "--cache", str(out / "c.sqlite"), "--concurrency", "4", "--no-progress", *extra]

    done = subprocess.run(command(local_dir), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(command(ray_dir, "--ray", cluster.address), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    results = ray_dir / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_bytes().splitlines()) >= 10:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 10 <= len(results.read_bytes().splitlines()) < 60, "the kill must land mid-run"
    again = subprocess.run(command(ray_dir, "--ray", cluster.address), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((ray_dir / "summary.json").read_text())["complete"]
    keep = ("id", "answer", "correct", "error", "truth", "samples")
    assert [{k: r[k] for k in keep} for r in lines(results)] == \
        [{k: r[k] for k in keep} for r in lines(local_dir / "results.jsonl")]
    assert [r["trace"]["gen"]["answers"] for r in lines(results)] == \
        [r["trace"]["gen"]["answers"] for r in lines(local_dir / "results.jsonl")]
    paid = sqlite3.connect(ray_dir / "c.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert paid == sqlite3.connect(local_dir / "c.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0]


def test_complexity_labels_on_ray_equal_local_labels(cluster, tmp_path):
    from llmnet.complexity.label import label_tasks
    from llmnet.complexity.tiers import load_tiers
    from llmnet.tasks.datasets import load_dataset
    from tests.complexity import write_tiers

    tiers = load_tiers(write_tiers(tmp_path))
    queries = load_dataset("arithmetic:n=12,digits=1-4", seed=3)
    local = label_tasks(tiers, queries, trials=3, threshold=2, unsolved="top", cache_path=tmp_path / "l.sqlite")
    remote = label_tasks(tiers, queries, trials=3, threshold=2, unsolved="top", cache_path=tmp_path / "r.sqlite",
                         ray=RayOptions(workers=2))
    assert remote.records == local.records
    assert {r["label"] for r in local.records} != {None}


def test_scaling_pools_drawn_on_ray_equal_local_pools(cluster, tmp_path):
    from llmnet.scaling.experiment import draw_pools

    local, _ = draw_pools(network(0), QUERIES[:12], 6, tmp_path / "l.sqlite")
    remote, summary = draw_pools(network(0), QUERIES[:12], 6, tmp_path / "r.sqlite", ray=RayOptions(workers=2))
    assert remote == local and summary["ray"]["workers"] == 2


def test_ray_without_the_extra_says_how_to_install(tmp_path):
    """``--ray`` where ray cannot be imported: one line naming the extra, exit 2."""
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK.format(latency=0))
    code = ("import sys; sys.modules['ray'] = None; from llmnet.cli.main import main; sys.argv = ['llmnet'] + "
            f"{['run', str(net), '--data', 'arithmetic', '--limit', '2', '--out', str(tmp_path / 'o'), '--ray', 'local', '--no-cache']!r}; main()")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'llmnet-compound[ray]'" in done.stderr and "Traceback" not in done.stderr
