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


def payers(cache) -> set[str]:
    """The processes (sessions) that paid for the samples in a cache file."""
    rows = sqlite3.connect(cache).execute("SELECT paid_by FROM samples").fetchall()
    return {paid_by.rsplit("\x1f", 1)[-1] for (paid_by,) in rows}


def same_as_local(ours: list[dict], theirs: list[dict]) -> None:
    """Every field of every record equal, timings aside (answers, usage, cache hits, traces)."""
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    for mine, local in zip(without_timings(ours), without_timings(theirs)):
        assert mine == local, mine["id"]


SUMMED = ("queries", "accuracy", "correct", "samples", "errors", "calls", "attempts", "cache_hits", "prompt_tokens",
          "completion_tokens", "cost_usd", "cached_tokens", "cached_cost_usd")


def test_two_nodes_give_the_local_results_and_resume_like_a_local_run(cluster, tmp_path):
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local = run_network(network(), QUERIES, RunConfig(out_dir=local_dir, cache_path=local_dir / "c.sqlite",
                                                      progress=False))
    options = RayOptions(workers=2)
    config = RunConfig(out_dir=ray_dir, cache_path=ray_dir / "c.sqlite", progress=False, ray=options)
    whole = run_network(network(), QUERIES, config)
    assert whole.summary["ray"]["nodes"] == 2 and whole.summary["ray"]["workers"] == 2
    assert whole.summary["calls"] == 40 and whole.summary["cache_hits"] == 0
    same_as_local(lines(ray_dir / "results.jsonl"), lines(local_dir / "results.jsonl"))
    paid_first = payers(ray_dir / "c.sqlite")
    # a run killed half-way leaves the first lines: the same command resumes from them and runs the rest
    first = (ray_dir / "results.jsonl").read_text().splitlines()[:20]
    (ray_dir / "results.jsonl").write_text("".join(line + "\n" for line in first))
    full = run_network(network(), QUERIES, config)
    assert (ray_dir / "results.jsonl").read_text().splitlines()[:20] == first  # resumed (timings and all), not rerun
    # the killed process's samples are booked as paid by the queries that paid them, as a local resume
    # books them: the file equals the local run's in every field but timings ...
    same_as_local(lines(ray_dir / "results.jsonl"), lines(local_dir / "results.jsonl"))
    summary = json.loads((ray_dir / "summary.json").read_text())
    for field in SUMMED:
        assert summary[field] == local.summary[field] == full.summary[field], field
    assert summary["calls"] == 40 and summary["cache_hits"] == 0
    # ... and nothing was paid twice: no process of the resumed run paid for any sample
    assert payers(ray_dir / "c.sqlite") == paid_first
    rows = sqlite3.connect(ray_dir / "c.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert rows == 3 * len(QUERIES)
    # budgets are split over the workers, and said so
    assert summary["ray"]["per_worker_limits"]["sim"] == {"concurrency": [4, 4], "rpm": 30000.0, "tpm": None}
    assert summary["max_in_flight"]["sim"] <= 8


def test_keep_text_reaches_the_workers(cluster, tmp_path):
    local = run_network(network(0), QUERIES[:6], RunConfig(cache_path=tmp_path / "l.sqlite", keep_text=True))
    remote = run_network(network(0), QUERIES[:6], RunConfig(cache_path=tmp_path / "r.sqlite", keep_text=True,
                                                            ray=RayOptions(workers=2)))
    assert all(len(r["trace"]["gen"]["texts"]) == 3 for r in remote.results)
    same_as_local(remote.results, local.results)


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
    # the re-sent queries book what the dead worker had paid for them as paid: the local run's records
    same_as_local(lines(ray_dir / "results.jsonl"), lines(local_dir / "results.jsonl"))
    # nothing paid twice: a re-sent query found what the dead worker had paid in the driver's cache
    assert s["samples"] == 3 * len(QUERIES) and s["calls"] == len(QUERIES) and s["cache_hits"] == 0
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
    same_as_local(lines(results), lines(local_dir / "results.jsonl"))
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


def test_sweep_on_ray_equals_the_local_sweep(cluster, tmp_path):
    """``llmnet sweep ... --ray ADDRESS`` (in process: the test's driver is already on the cluster)."""
    from typer.testing import CliRunner

    from llmnet.cli.main import app

    net = tmp_path / "net.yaml"
    net.write_text(NETWORK.format(latency=0).replace("  gen: {kind: generator, model: sim, samples: 3}\n",
                                                     "  gen:\n    kind: generator\n    model: sim\n    samples: ${K}\n")
                   + "params: {K: 1}\n")
    results = {}
    for name, extra in (("local", []), ("ray", ["--ray", cluster.address])):
        done = CliRunner().invoke(app, ["sweep", str(net), "--grid", "K=1,3", "--data", "arithmetic:n=10",
                                        "--out", str(tmp_path / name), "--cache", str(tmp_path / f"{name}.sqlite"),
                                        "--no-progress", *extra])
        assert done.exit_code == 0, done.output
        results[name] = json.loads((tmp_path / name / "sweep.json").read_text())
    for mine, local in zip(results["ray"]["points"], results["local"]["points"]):
        assert mine == local
    for point in ("K=1", "K=3"):
        assert without_timings(lines(tmp_path / "ray" / "points" / point / "results.jsonl")) == \
            without_timings(lines(tmp_path / "local" / "points" / point / "results.jsonl"))
        assert json.loads((tmp_path / "ray" / "points" / point / "summary.json").read_text())["ray"]["workers"] == 2


def test_bare_ray_starts_a_local_ray(tmp_path):
    """``llmnet run --ray FILE ...``: no address and no $RAY_ADDRESS start a new local Ray."""
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK.format(latency=0))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env[MONITOR] = "0"
    done = subprocess.run([sys.executable, "-m", "llmnet", "run", "--ray", str(net), "--data", "arithmetic:n=6",
                           "--out", str(tmp_path / "o"), "--no-cache", "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["ray"]["address"] == "local" and summary["ray"]["nodes"] == 1 and summary["queries"] == 6


def test_a_sweep_joins_ray_once_for_all_its_points(tmp_path):
    """``llmnet sweep --ray ...`` starts one local Ray for every point, not one per point."""
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK.format(latency=0).replace("  gen: {kind: generator, model: sim, samples: 3}\n",
                                                     "  gen:\n    kind: generator\n    model: sim\n    samples: ${K}\n")
                   + "params: {K: 1}\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env[MONITOR] = "0"
    done = subprocess.run([sys.executable, "-m", "llmnet", "sweep", str(net), "--grid", "K=1,2,3", "--data",
                           "arithmetic:n=4", "--out", str(tmp_path / "s"), "--no-cache", "--no-progress", "--ray"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    heads = {json.loads((tmp_path / "s" / "points" / f"K={k}" / "summary.json").read_text())["ray"]["address"]
             for k in (1, 2, 3)}
    assert len(heads) == 1 and ":" in heads.pop()  # one Ray instance, named by its head's address


# ----------------------------------------------------------------------------- claims shared with other processes


def cache_rows(path) -> list[tuple]:
    """Every sample row of a cache file: (key, seed, text, prompt_tokens, completion_tokens, paid_by, calls, attempts)."""
    return sqlite3.connect(path).execute("SELECT key, seed, text, prompt_tokens, completion_tokens, paid_by, calls, "
                                         "attempts FROM samples ORDER BY key, seed").fetchall()


def test_a_ray_run_waits_for_another_process_claim_and_reads_its_rows(cluster, tmp_path):
    """Another process holds the claims on three queries' keys (it is paying for them): the Ray run
    finishes the other queries, waits for those three, then reads the other process's rows and pays
    nothing for them."""
    from llmnet.backends.base import Sample
    from llmnet.execute.cache import SampleCache

    queries, claimed = QUERIES[:6], QUERIES[:3]
    reference = run_network(network(0), queries, RunConfig(cache_path=tmp_path / "ref.sqlite", progress=False))
    run_network(network(0), claimed, RunConfig(cache_path=tmp_path / "theirs.sqlite", progress=False))
    theirs = cache_rows(tmp_path / "theirs.sqlite")  # what the other process is paying for: 3 keys x 3 seeds
    keys = sorted({row[0] for row in theirs})
    assert len(keys) == 3 and len(theirs) == 9
    shared, out = tmp_path / "shared.sqlite", tmp_path / "ray"
    other = SampleCache(shared)  # its own connection and claims (the cache actor is another process)
    assert all(other.claim(key) for key in keys)
    seen: dict[str, object] = {}

    def pay_then_release() -> None:
        results = out / "results.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (results.exists() and len(results.read_bytes().splitlines()) >= 3):
            time.sleep(0.02)
        time.sleep(1.0)  # time enough for a claimed query to finish, were it not waiting
        seen["done_while_claimed"] = sorted(json.loads(line)["id"] for line in results.read_text().splitlines())
        try:
            for key in keys:
                mine = [row for row in theirs if row[0] == key]
                other.put_many(key, [(row[1], Sample(*row[2:5])) for row in mine], "other-process", *mine[0][6:])
        finally:  # never leave the Ray run waiting, even if this thread fails
            seen["released_at"] = time.monotonic()
            for key in keys:
                other.release(key)

    holder = threading.Thread(target=pay_then_release)
    holder.start()
    try:
        report = run_network(network(0), queries, RunConfig(out_dir=out, cache_path=shared, progress=False,
                                                            ray=RayOptions(workers=2)))
        finished = time.monotonic()
    finally:
        holder.join()
        other.close()
    assert seen["done_while_claimed"] == ["q3", "q4", "q5"]  # the claimed queries waited ...
    assert finished > seen["released_at"]
    s = report.summary
    assert s["errors"] == 0 and s["complete"]
    assert s["calls"] == 3 and s["cache_hits"] == 9  # ... and read the other process's rows: paid only for q3-q5
    by_id = {r["id"]: r for r in report.results}
    for q in claimed:
        assert by_id[q.id]["calls"] == 0 and by_id[q.id]["cache_hits"] == 3
    assert [r["answer"] for r in report.results] == [r["answer"] for r in reference.results]
    rows = cache_rows(shared)
    assert len(rows) == 18 and sum(row[5] == "other-process" for row in rows) == 9


OTHER_PROCESS = """
import json, sys
from llmnet import loads_network
from llmnet.execute import RunConfig, run_network
from llmnet.tasks.query import Query

net = loads_network(open(sys.argv[1]).read())
queries = [Query(f"q{i}", f"{i} + {i + 1}", str(2 * i + 1)) for i in range(int(sys.argv[3]))]
print("ready", flush=True)
sys.stdin.readline()
report = run_network(net, queries, RunConfig(cache_path=sys.argv[2], progress=False))
print(json.dumps(report.summary), flush=True)
"""


def test_another_process_waits_for_a_ray_workers_claim_and_reads_its_rows(cluster, tmp_path):
    """The opposite direction: while Ray workers pay for four queries (2 s calls), a second process on
    the same cache asks for the same samples; it waits for the workers' claims and reads their rows."""
    from llmnet.execute.cache import SampleCache

    queries = QUERIES[:4]
    run_network(network(0), queries, RunConfig(cache_path=tmp_path / "ref.sqlite", progress=False))
    keys = sorted({row[0] for row in cache_rows(tmp_path / "ref.sqlite")})
    assert len(keys) == 4
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK.format(latency=0))
    shared = tmp_path / "shared.sqlite"
    other = subprocess.Popen([sys.executable, "-c", OTHER_PROCESS, str(net), str(shared), str(len(queries))], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    box: list = []
    ray_run = threading.Thread(target=lambda: box.append(run_network(
        network(2.0), queries, RunConfig(cache_path=shared, progress=False, ray=RayOptions(workers=2)))))
    try:
        assert other.stdout.readline().strip() == "ready"
        ray_run.start()
        probe = SampleCache(shared)  # is every key claimed by someone else (the workers, through the cache actor)?
        free, deadline = keys, time.time() + 120
        while time.time() < deadline and ray_run.is_alive():
            free = [key for key in keys if probe.claim(key)]
            for key in free:
                probe.release(key)
            if not free:
                break
            time.sleep(0.02)
        probe.close()
        assert not free, "the Ray workers never claimed the keys they pay for"
        other.stdin.write("go\n")
        other.stdin.flush()
        out, err = other.communicate(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
        if ray_run.is_alive():
            ray_run.join()
    assert other.returncode == 0, err
    theirs, ours = json.loads(out.splitlines()[-1]), box[0].summary
    assert ours["calls"] == 4 and ours["cache_hits"] == 0 and ours["errors"] == 0
    assert theirs["calls"] == 0 and theirs["cache_hits"] == 12 and theirs["errors"] == 0  # waited, then read
    rows = cache_rows(shared)
    assert len(rows) == 12 and len({row[5].split("\x1f")[0] for row in rows}) == 1  # all paid by the Ray run


def test_the_cache_actor_keeps_each_workers_claims_apart(tmp_path, monkeypatch):
    """The actor's process holds every worker's locks, so it tells workers apart itself: another worker's
    claim on a held key is refused until the holder releases it or dies (``forget``); a granted claim
    brings the key's rows, unless the key has more seeds than ``PREFETCH_SEEDS``."""
    from llmnet.backends.base import Sample
    from llmnet.execute import cluster

    server = cluster._CacheServer(str(tmp_path / "c.sqlite"))
    try:
        server.put_many("a" * 64, [(0, ("x", 1, 2, "", 0, "", "")), (1, ("y", 1, 2, "", 0, "", ""))], "p", 1, 1)
        granted, rows = server.claim("a" * 64, "w1")
        assert granted and sorted(rows) == [0, 1] and Sample(*rows[1][0]).text == "y"
        assert server.claim("a" * 64, "w2") == (False, None)  # another worker waits ...
        server.release_many(["a" * 64], "w2")  # ... and cannot release what it does not hold
        assert server.claim("a" * 64, "w2") == (False, None)
        granted, _ = server.claim("b" * 64, "w1", released=["a" * 64])  # a release riding on the next call
        assert granted and server.claim("a" * 64, "w2")[0]
        assert server.claim("b" * 64, "w2") == (False, None)
        assert server.forget("w1") == 1  # w1 died holding "b"
        assert server.claim("b" * 64, "w2") == (True, {})
        monkeypatch.setattr(cluster, "PREFETCH_SEEDS", 1)
        server.release("a" * 64, "w2")
        assert server.claim("a" * 64, "w3") == (True, None)  # two seeds > 1: the worker reads them itself
        assert sorted(server.get_paid("a" * 64, [0, 1, 2], "w3")) == [0, 1]
    finally:
        server.close()
