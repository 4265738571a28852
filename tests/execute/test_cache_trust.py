"""The sample cache under stress: damaged files, a full disk, two processes sharing it."""

import json
import sqlite3
import subprocess
import sys

import pytest

from llmnet.errors import CacheError
from llmnet.execute import RunConfig, run_network
from llmnet.execute.cache import SampleCache
from llmnet.tasks.datasets import arithmetic
from tests.cli.test_main import llmnet
from tests.conftest import ROOT
from tests.execute.test_executor import VOTE, net

NETWORK = """
models: {sim: {backend: simulated, model: s, latency_s: 0.05, price: {input: 1, output: 1}}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
  vote: {kind: vote, inputs: [gen]}
"""


def damaged(tmp_path, how):
    path = tmp_path / f"{how}.sqlite"
    if how == "garbage":
        path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    elif how == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE samples (name TEXT, price REAL)")
        db.commit()
        db.close()
    elif how == "text":
        path.write_text("not a database at all\n" * 100)
    return path


@pytest.mark.parametrize("how", ["garbage", "foreign", "text"])
def test_damaged_cache_is_one_line_naming_file_and_remedy(tmp_path, how):
    cache = damaged(tmp_path, how)
    (tmp_path / "net.yaml").write_text(NETWORK)
    res = llmnet("run", tmp_path / "net.yaml", "--data", "arithmetic", "--limit", "3", "--out", tmp_path / "o",
                 "--cache", cache, "--no-progress")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cache) in lines[0] and "--cache" in lines[0], lines
    assert "Traceback" not in res.stderr


class FullDisk:
    """A connection whose writes fail as SQLite's do on a full disk."""

    def __init__(self, db):
        self.db = db

    def execute(self, sql, *args):
        if sql.startswith(("BEGIN", "INSERT")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def executemany(self, sql, *args):
        raise sqlite3.OperationalError("database or disk is full")

    def close(self):
        self.db.close()


def test_full_disk_stops_the_run_with_one_cache_error(tmp_path, monkeypatch):
    real_init = SampleCache.__init__

    def init(self, path):
        real_init(self, path)
        self._db = FullDisk(self._db)

    real_writer = SampleCache.connect_writer  # the writer thread's own connection fails alike
    monkeypatch.setattr(SampleCache, "__init__", init)
    monkeypatch.setattr(SampleCache, "connect_writer", lambda self: FullDisk(real_writer(self)))
    with pytest.raises(CacheError, match="disk is full.*free disk space"):
        run_network(net(VOTE), arithmetic(5), RunConfig(cache_path=tmp_path / "c.sqlite", out_dir=tmp_path / "o"))
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert not summary["complete"] and "disk is full" in summary["stopped"]


def test_an_old_cache_is_migrated_and_its_samples_used(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE samples (key TEXT NOT NULL, seed INTEGER NOT NULL, text TEXT NOT NULL, prompt_tokens "
               "INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, PRIMARY KEY (key, seed)) WITHOUT ROWID")
    db.execute("INSERT INTO samples VALUES ('k', 0, 'hello', 1, 2)")
    db.commit()
    db.close()
    cache = SampleCache(path)
    assert cache.get_many("k", [0])[0].text == "hello" and len(cache) == 1
    cache.close()


def test_two_processes_sharing_a_cache_never_pay_twice(tmp_path):
    """Two real processes run the same queries at the same moment on one cache, one of them in
    reverse order, so both pay for some samples and meet in the middle."""
    (tmp_path / "net.yaml").write_text(NETWORK)
    cache = tmp_path / "shared.sqlite"
    rows = [json.dumps({"id": q.id, "question": q.question, "answer": q.answer}) + "\n" for q in arithmetic(300)]
    (tmp_path / "forward.jsonl").write_text("".join(rows))
    (tmp_path / "backward.jsonl").write_text("".join(reversed(rows)))

    def cmd(data, out, cache_path):
        return [sys.executable, "-m", "llmnet", "run", str(tmp_path / "net.yaml"), "--data", str(tmp_path / data),
                "--out", str(tmp_path / out), "--cache", str(cache_path), "--concurrency", "8", "--no-progress"]

    procs = [subprocess.Popen(cmd(data, out, cache), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for data, out in (("forward.jsonl", "a"), ("backward.jsonl", "b"))]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    single = subprocess.run(cmd("forward.jsonl", "single", tmp_path / "alone.sqlite"), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    summaries = {d: json.loads((tmp_path / d / "summary.json").read_text()) for d in ("a", "b", "single")}
    calls = [summaries[d]["calls"] for d in ("a", "b", "single")]
    assert calls[0] > 0 and calls[1] > 0, "both processes must have paid for some samples"
    assert calls[0] + calls[1] == calls[2], calls  # together exactly what one run pays
    paid = sum(summaries[d]["samples"] - summaries[d]["cache_hits"] for d in ("a", "b"))
    assert sqlite3.connect(cache).execute("SELECT COUNT(*) FROM samples").fetchone()[0] == paid
    assert all(summaries[d]["errors"] == 0 and summaries[d]["queries"] == 300 for d in summaries)
