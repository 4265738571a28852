"""kill -9 at any moment, then the same command again: nothing paid twice, nothing lost."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import ROOT

NETWORK = """
models: {sim: {backend: simulated, model: s, latency_s: 0.01, price: {input: 1, output: 1}}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
  vote: {kind: vote, inputs: [gen]}
"""


def command(tmp_path, out, cache):
    return [sys.executable, "-m", "llmnet", "run", str(tmp_path / "net.yaml"), "--data", "arithmetic",
            "--limit", "150", "--out", str(out), "--cache", str(cache), "--concurrency", "3", "--no-progress"]


def results(path):
    return [{k: r[k] for k in ("id", "answer", "correct", "error")} for r in map(json.loads, open(path))]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    (tmp_path / "net.yaml").write_text(NETWORK)
    clean = subprocess.run(command(tmp_path, tmp_path / "clean", tmp_path / "clean.sqlite"), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr

    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    proc = subprocess.Popen(command(tmp_path, out, cache), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "results.jsonl").exists() and len((out / "results.jsonl").read_bytes().splitlines()) >= 30:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = len((out / "results.jsonl").read_bytes().splitlines())
    assert 30 <= finished_before < 150, "the kill must land mid-run"
    paid_before = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    again = subprocess.run(command(tmp_path, out, cache), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries"] == 150 and summary["complete"]
    assert results(out / "results.jsonl") == results(tmp_path / "clean" / "results.jsonl")
    # every sample was paid exactly once across the two runs
    per_query = [json.loads(l) for l in open(out / "results.jsonl")]
    assert len({r["id"] for r in per_query}) == 150
    db = sqlite3.connect(cache)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    distinct = sqlite3.connect(tmp_path / "clean.sqlite").execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == distinct  # same prompts share samples
    resumed = subprocess.run(command(tmp_path, tmp_path / "again", cache), cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["calls"] == 0  # all from the cache
    assert paid_before < distinct
    paid_in_results = summary["samples"] - summary["cache_hits"]
    assert paid_in_results <= distinct  # across both runs no sample was paid for twice


def test_ctrl_c_writes_what_finished_and_exits(tmp_path):
    (tmp_path / "net.yaml").write_text(NETWORK.replace("latency_s: 0.01", "latency_s: 0.1"))  # ~5 s in all
    out = tmp_path / "run"
    # a test runner started in the background may ignore SIGINT, and children inherit that
    proc = subprocess.Popen(command(tmp_path, out, tmp_path / "c.sqlite"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "results.jsonl").exists() and len((out / "results.jsonl").read_bytes().splitlines()) >= 10:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr and "interrupted" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "interrupted" and not summary["complete"]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == summary["queries"] >= 10 and all(json.loads(l)["id"] for l in lines)


def _without_timings(rec):
    """A record with its wall-clock fields removed (everything else must match exactly)."""
    rec = dict(rec)
    rec.pop("latency_s")
    rec["trace"] = {node: {k: ({f: v for f, v in val.items() if f != "latency_s"} if k == "usage" else val)
                           for k, val in entry.items()} for node, entry in rec["trace"].items()}
    return rec


def test_kill_9_at_random_points_then_resume_equals_uninterrupted_run_in_every_field(tmp_path):
    """3,000 queries; kill -9 at several random moments; the resumed file equals a clean run's
    in every field but timings, and summary.json's paid totals equal what both processes paid."""
    import random

    # generate, then judge each candidate: samples are paid well before their query's record is written
    (tmp_path / "net.yaml").write_text(NETWORK.replace("latency_s: 0.01", "latency_s: 0.005").replace(
        "vote: {kind: vote, inputs: [gen]}", "judge: {kind: filter_vote, model: sim, inputs: [gen]}"))

    def cmd(out, cache):
        return [sys.executable, "-m", "llmnet", "run", str(tmp_path / "net.yaml"), "--data", "arithmetic",
                "--limit", "3000", "--out", str(out), "--cache", str(cache), "--no-progress"]

    clean = subprocess.run(cmd(tmp_path / "clean", tmp_path / "clean.sqlite"), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    rng = random.Random(12)
    kills = 0
    for _ in range(4):
        target = rng.randint(1, 2900)
        proc = subprocess.Popen(cmd(out, cache), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            path = out / "results.jsonl"
            if path.exists() and path.stat().st_size and len(path.read_bytes().splitlines()) >= target:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2, "the kills must land mid-run"
    final = subprocess.run(cmd(out, cache), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    got = [json.loads(l) for l in open(out / "results.jsonl")]
    want = [json.loads(l) for l in open(tmp_path / "clean" / "results.jsonl")]
    assert len(got) == len(want) == 3000
    differing = [(g["id"], {k for k in g if g[k] != w.get(k)}) for g, w in zip(got, want)
                 if _without_timings(g) != _without_timings(w)]
    assert not differing, differing[:5]
    summary = json.loads((out / "summary.json").read_text())
    db = sqlite3.connect(cache)
    paid_rows = db.execute("SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(calls) "
                           "FROM samples").fetchone()
    assert summary["samples"] - summary["cache_hits"] == paid_rows[0]  # every sample paid is booked once
    assert (summary["prompt_tokens"], summary["completion_tokens"], summary["calls"]) == paid_rows[1:]
    assert not list(out.glob(".*.tmp"))
