"""The sample cache under stress: damaged files, a full disk, two processes sharing it."""

import json
import logging
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmnet.backends.base import Sample
from llmnet.errors import CacheError
from llmnet.execute import RunConfig, run_network
from llmnet.execute.cache import (CALL_COLUMNS, CALLS_TABLE, SAMPLES_VIEW, SampleCache, _pack, call_rows, decode,
                                  pack, pack_samples)
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


def test_a_v2_cache_with_server_remarks_converts_to_call_rows_keeping_every_field(tmp_path):
    """A file from before call rows (a table row per sample, sample_meta beside it) is rewritten in
    place: texts, tokens, who paid, the calls and attempts booked and the server's remarks survive,
    and the ``samples`` view still shows a row per sample."""
    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE samples (key TEXT NOT NULL, seed INTEGER NOT NULL, text TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, paid_by TEXT NOT NULL DEFAULT '',
            calls INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (key, seed)) WITHOUT ROWID;
        CREATE TABLE sample_meta (key TEXT NOT NULL, seed INTEGER NOT NULL, meta TEXT NOT NULL,
            PRIMARY KEY (key, seed)) WITHOUT ROWID;
        INSERT INTO samples VALUES ('k', 0, 'héllo "x"', 5, 2, 'run\x1fq', 1, 3), ('k', 1, 'b', 5, 1, 'run\x1fq', 0, 0),
                                   ('j', 4, 'c', 7, 1, '', 0, 0);
        INSERT INTO sample_meta VALUES ('k', 1, '{"reasoning": "because", "cached_tokens": 4}');
    """)
    db.commit()
    db.close()
    cache = SampleCache(path)
    got = cache.get_paid("k", range(2))
    assert got[0] == (Sample('héllo "x"', 5, 2), "run\x1fq", 1, 3)
    assert got[1] == (Sample("b", 5, 1, reasoning="because", cached_tokens=4), "run\x1fq", 0, 0)
    assert cache.get_paid("j", range(3, 6)) == {4: (Sample("c", 7, 1), "", 0, 0)} and len(cache) == 3
    cache.close()
    db = sqlite3.connect(path)
    kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE name IN ('samples', 'calls', 'sample_meta')"))
    assert kinds == {"samples": "view", "calls": "table"}
    assert db.execute("SELECT key, seed, text, calls, attempts FROM samples ORDER BY key, seed").fetchall() == [
        ("j", 4, "c", 0, 0), ("k", 0, 'héllo "x"', 1, 3), ("k", 1, "b", 0, 0)]
    db.close()
    assert len(SampleCache(path)) == 3  # opening it again converts nothing twice


def test_call_rows_cover_any_seed_range_asked_later(tmp_path):
    """One row per call, yet the cache answers per sample: K=10 after K=5 reads 0..4, a range that
    straddles two calls reads both, scattered seeds read only themselves, and a call's ``calls`` and
    ``attempts`` are booked on its first sample only."""
    cache = SampleCache(tmp_path / "c.sqlite")
    cache.put_many("k", [(s, Sample(f"t{s}", 3, 1)) for s in range(5)], "me", 1, 2)
    assert sorted(cache.get_paid("k", range(10))) == [0, 1, 2, 3, 4]
    cache.put_many("k", [(s, Sample(f"t{s}", 3, 1)) for s in range(5, 10)], "you", 1, 1)
    got = cache.get_paid("k", range(3, 7))
    assert {s: (r[0].text, r[1], r[2]) for s, r in got.items()} == {
        3: ("t3", "me", 0), 4: ("t4", "me", 0), 5: ("t5", "you", 1), 6: ("t6", "you", 0)}
    assert sorted(cache.get_many("k", [9, 0, 7])) == [0, 7, 9] and len(cache) == 10
    cache.put_many("g", [(0, Sample("a", 1, 1)), (1, Sample("b", 1, 1)), (5, Sample("c", 1, 1))], "x", 1, 4)
    assert [(r[2], r[3]) for _, r in sorted(cache.get_paid("g", [0, 1, 5]).items())] == [(1, 4), (0, 0), (0, 0)]
    cache.close()


def test_a_damaged_call_row_is_one_cache_error(tmp_path):
    path = tmp_path / "c.sqlite"
    SampleCache(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO calls VALUES ('k', 0, 2, 'not json', '', 0, 0)")
    db.commit()
    db.close()
    cache = SampleCache(path)
    with pytest.raises(CacheError, match="unusable.*damaged row"):
        cache.get_paid("k", range(2))
    cache.close()


def test_a_run_returns_before_sqlite_tidies_the_file_and_the_process_still_finishes_it(tmp_path):
    """``run_network`` leaves SQLite's closing checkpoint to a thread: its samples are readable at
    once, and a process that exits right away still completes the checkpoint (the WAL is gone)."""
    cache = tmp_path / "c.sqlite"
    script = (f"from llmnet import loads_network\nfrom llmnet.execute import RunConfig, run_network\n"
              f"from llmnet.tasks.datasets import arithmetic\n"
              f"rep = run_network(loads_network({NETWORK.replace('0.05', '0')!r}), arithmetic(50), "
              f"RunConfig(cache_path={str(cache)!r}, progress=False))\n"
              f"import sqlite3\nprint(sqlite3.connect({str(cache)!r}).execute('SELECT COUNT(*) FROM samples').fetchone()[0],"
              f" rep.summary['samples'] - rep.summary['cache_hits'])\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    stored, paid = map(int, done.stdout.split())
    assert stored == paid > 0  # committed before the run returned
    assert not (tmp_path / "c.sqlite-wal").exists()  # the closing checkpoint ran before the process ended
    assert SampleCache(cache).integrity_ok()


def test_a_commit_of_many_calls_spans_several_insert_statements_in_one_transaction(tmp_path):
    """put_rows writes INSERT_ROWS rows a statement: every row of a batch lands, across the
    statement boundaries, a repeated row is ignored wherever it falls, and a batch that fails part
    way leaves nothing of itself behind."""
    from llmnet.execute.cache import INSERT_ROWS, call_rows

    cache = SampleCache(tmp_path / "c.sqlite")
    rows = [row for i in range(2 * INSERT_ROWS + 5) for row in call_rows(f"k{i}", [(0, Sample(f"t{i}", 1, 1))])]
    cache.put_rows(rows + rows[:3])  # the repeats fall in the last statement
    assert len(cache) == 2 * INSERT_ROWS + 5
    assert cache.get_many(f"k{2 * INSERT_ROWS + 4}", [0])[0].text == f"t{2 * INSERT_ROWS + 4}"
    bad = [row for i in range(INSERT_ROWS + 2) for row in call_rows(f"n{i}", [(0, Sample("x", 1, 1))])]
    bad[-1] = (*bad[-1][:3], {"not": "storable"}, *bad[-1][4:])  # fails to bind, in the second statement
    with pytest.raises(CacheError):
        cache.put_rows(bad)
    assert len(cache) == 2 * INSERT_ROWS + 5 and cache.get_many("n0", [0]) == {}
    cache.close()


_samples = st.builds(Sample, st.text(), st.integers(0, 10**9), st.integers(0, 10**9),
                     st.none() | st.text(min_size=1), st.integers(0, 50), st.none() | st.text(min_size=1),
                     st.none() | st.text(min_size=1))


@settings(max_examples=300, deadline=None)
@given(st.lists(_samples, max_size=6))
def test_packed_samples_are_the_encoders_bytes_and_read_back_whole(samples):
    """The fast path (escaped texts joined by hand) writes exactly what the JSON encoder writes, for
    any text (quotes, control characters, lone surrogates) and with or without a server's remarks."""
    items = list(enumerate(samples))
    assert pack(items) == _pack(samples) == pack_samples(samples)
    if samples:  # the executor's row for one call (``GroupCommit.put_call``) is call_rows' for its items
        assert call_rows("k", items, "me", 1, 2) == [("k", 0, len(samples), pack_samples(samples), "me", 1, 2)]
    back = [Sample(i[0], i[1], i[2], **i[3]) if len(i) > 3 else Sample(*i) for i in json.loads(pack(items))]
    assert back == samples


class Text(str):
    """A backend's text of a str subclass: stored as text, read back as a str."""


_odd_samples = st.builds(Sample, st.text() | st.text().map(Text),
                         st.integers(0, 99) | st.booleans() | st.floats(0, 99), st.integers(0, 99) | st.booleans(),
                         st.none() | st.text(min_size=1), st.integers(0, 5) | st.sampled_from([0.0, False, 1.0]))


def test_a_packed_calls_samples_are_remembered_as_exactly_what_reading_them_back_gives(tmp_path):
    """``SampleCache.pack`` keeps a plain call's own samples as its row's decoding, so a repeat of the
    prompt served from memory gets what a read of the file gets: the same values of the same types
    (0 and 0.0, 1 and True, a str and a str subclass differ), and the stored bytes are the encoder's."""
    cache = SampleCache(tmp_path / "c.sqlite")

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_samples | _odd_samples, min_size=1, max_size=6))
    def check(samples):
        packed = cache.pack(samples)
        assert packed == _pack(samples) == pack_samples(samples)
        kept, read = cache.decode(packed), decode(packed)  # (no memo: as a read of the file gives it)
        assert kept == read
        fields = ("text", "prompt_tokens", "completion_tokens", "reasoning", "cached_tokens", "fingerprint",
                  "served_model")
        assert [[type(getattr(s, f)) for f in fields] for s in kept] == \
               [[type(getattr(s, f)) for f in fields] for s in read]

    check()
    cache.close()


def test_a_new_cache_file_has_large_pages_and_an_existing_file_keeps_its_own(tmp_path):
    """New files get ``PAGE_BYTES`` pages (fewer pages for a commit's scattered keys to rewrite); a file
    made with SQLite's default pages is used as it is, its samples read and new ones written."""
    from llmnet.execute.cache import PAGE_BYTES

    fresh = SampleCache(tmp_path / "new.sqlite")
    fresh.put_many("k", [(0, Sample("a", 1, 1))])
    fresh.close()
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript(CALLS_TABLE + ";" + SAMPLES_VIEW)
    db.execute("INSERT INTO calls VALUES ('k', 0, 1, '[[\"b\",1,1]]', '', 1, 1)")
    db.commit()
    db.close()
    cache = SampleCache(old)
    cache.put_many("k", [(1, Sample("c", 1, 1))])
    assert [s.text for s in cache.get_many("k", [0, 1]).values()] == ["b", "c"]
    cache.close()
    sizes = [sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0] for path in (tmp_path / "new.sqlite", old)]
    assert sizes == [PAGE_BYTES, 4096] and PAGE_BYTES > 4096


def test_a_new_cache_appends_its_rows_and_keeps_one_row_per_key_and_seed(tmp_path, caplog):
    """New files keep call rows in a rowid table (appended in write order) under a unique index on
    (key, seed): a commit changes the few index pages its keys fall on rather than the pages of
    whole rows all over the table (``experiments/bench_executor.py``, cache row). The first row
    written for a (key, seed) is still the one kept, and said when another is dropped."""
    cache = SampleCache(tmp_path / "c.sqlite")
    cache.put_many("k", [(0, Sample("first", 1, 1))], "me", 1, 1)
    with caplog.at_level(logging.WARNING, logger="llmnet.execute.cache"):
        cache.put_many("k", [(0, Sample("second", 1, 1))], "you", 1, 1)
    assert cache.get_paid("k", range(1)) == {0: (Sample("first", 1, 1), "me", 1, 1)} and len(cache) == 1
    assert "already held 1 of 1" in caplog.text
    cache.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    table = db.execute("SELECT sql FROM sqlite_master WHERE name = 'calls'").fetchone()[0]
    assert "WITHOUT ROWID" not in table and "UNIQUE (key, seed)" in table
    assert [row[1] for row in db.execute("PRAGMA table_info(calls)")] == CALL_COLUMNS
    assert db.execute("SELECT COUNT(*) FROM pragma_index_list('calls') WHERE \"unique\" = 1").fetchone()[0] == 1
    db.close()


def test_a_cache_laid_out_by_the_previous_llmnet_is_used_as_it_is(tmp_path):
    """A file whose ``calls`` table is keyed by (key, seed) WITHOUT ROWID (llmnet before the rowid
    layout) is read and written as it is, never rewritten: both layouts answer the same statements."""
    path = tmp_path / "prev.sqlite"
    db = sqlite3.connect(path)
    db.executescript(CALLS_TABLE.replace("UNIQUE (key, seed)\n)", "PRIMARY KEY (key, seed)\n) WITHOUT ROWID")
                     + ";" + SAMPLES_VIEW + ";")
    db.execute("INSERT INTO calls VALUES ('k', 0, 2, '[[\"a\",1,1],[\"b\",1,1]]', 'them', 1, 1)")
    db.commit()
    db.close()
    cache = SampleCache(path)
    cache.put_many("k", [(2, Sample("c", 1, 1))], "me", 1, 1)
    cache.put_many("k", [(0, Sample("dropped", 1, 1))], "me", 1, 1)  # (0 is held: the file keeps the first)
    assert {s: r[0].text for s, r in cache.get_paid("k", range(3)).items()} == {0: "a", 1: "b", 2: "c"}
    cache.close()
    db = sqlite3.connect(path)
    assert "WITHOUT ROWID" in db.execute("SELECT sql FROM sqlite_master WHERE name = 'calls'").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 3
    db.close()
