"""Claims across processes: counted while a process is alone on a cache, locks once another opens it."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmnet.backends.base import Sample
from llmnet.errors import CacheError
from llmnet.execute import claims as claims_module
from llmnet.execute.cache import CLAIMED, CLAIMED_ALONE, CLAIMED_NEW, SampleCache
from llmnet.execute.commits import GroupCommit

ROOT = Path(__file__).resolve().parents[2]
KEY = "ab" * 32


def other_process(path, *keys, hold_s=0.0):
    """Another process opens the cache and tries to claim ``keys``; prints what it was granted.
    It holds its claims for ``hold_s`` seconds before exiting."""
    code = (f"import sys, time\nfrom llmnet.execute.cache import SampleCache\n"
            f"c = SampleCache({str(path)!r})\n"
            f"print(' '.join(str(c.claim(k)) for k in {list(keys)!r}), flush=True)\n"
            f"time.sleep({hold_s})\nc.close()\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_process_alone_counts_claims_and_locks_them_when_another_opens_the_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SampleCache(path)
    assert cache.claim(KEY) == CLAIMED_NEW  # nobody else: counted, no lock (and nothing in the file)
    assert cache.claim("cd" * 32) == CLAIMED_NEW
    cache.release("cd" * 32)
    child = other_process(path, KEY, "cd" * 32)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split() == ["0", str(CLAIMED)]  # the key claimed while alone became a lock in time; the other is free
    assert not cache._claims.alone
    assert cache.claim("ef" * 32) == CLAIMED  # a real lock from now on
    cache.release(KEY)
    child = other_process(path, KEY)
    assert child.communicate(timeout=60)[0].split() == [str(CLAIMED)]
    cache.close()


def test_a_newcomer_waits_while_the_alone_process_steps_down_and_then_nobody_is_alone(tmp_path):
    path = tmp_path / "c.sqlite"
    child = other_process(path, KEY, hold_s=3)
    assert child.stdout.readline().split() == [str(CLAIMED_NEW)]  # the child was first: alone
    start = time.monotonic()
    cache = SampleCache(path)  # waits for the child to notice this process
    assert time.monotonic() - start < 2
    assert not cache._claims.alone
    assert cache.claim(KEY) == 0  # the child's claim from when it was alone is a lock now
    assert cache.claim("cd" * 32) == CLAIMED
    child.communicate(timeout=60)
    assert cache.claim(KEY) == CLAIMED  # gone with the child
    cache.close()


def test_caches_of_one_process_share_its_claims_and_closing_one_keeps_the_others(tmp_path):
    """POSIX locks belong to the process and closing any descriptor of the file drops them all:
    the process opens the claims file once, and closes it with its last cache."""
    path = tmp_path / "c.sqlite"
    first = SampleCache(path)
    child = other_process(path, hold_s=0)  # not alone any more, so claims are locks
    child.communicate(timeout=60)
    assert first.claim(KEY) == CLAIMED
    second = SampleCache(path)
    assert second._claims is first._claims
    second.close()
    child = other_process(path, KEY)
    assert child.communicate(timeout=60)[0].split() == ["0"]  # still held by the first cache
    first.close()
    assert os.path.realpath(f"{path}-claims") not in claims_module._FILES  # the last cache closed the file


def test_a_fresh_cache_alone_reads_only_keys_it_wrote(tmp_path):
    def claimed(cache, key):
        granted = cache.claim(key)
        cache.release(key)
        return granted

    path = tmp_path / "c.sqlite"
    cache = SampleCache(path)
    assert claimed(cache, KEY) == CLAIMED_NEW  # nothing to read
    cache.put_many(KEY, [(0, Sample("x", 1, 1))])
    assert claimed(cache, KEY) == CLAIMED_ALONE and claimed(cache, "cd" * 32) == CLAIMED_NEW
    cache.close()
    again = SampleCache(path)  # the file has rows now: not fresh, every key is read
    assert claimed(again, "cd" * 32) == CLAIMED_ALONE
    again.close()
    fresh = SampleCache(tmp_path / "d.sqlite")
    assert claimed(fresh, KEY) == CLAIMED_NEW
    child = other_process(tmp_path / "d.sqlite")
    child.communicate(timeout=60)
    assert claimed(fresh, KEY) == CLAIMED  # another process may have written anything
    fresh.close()


def test_a_turn_of_lookups_is_one_read_with_uncommitted_rows_on_top(tmp_path):
    cache = SampleCache(tmp_path / "c.sqlite")
    keys = [f"{i:064x}" for i in range(300)]
    for key in keys[:200]:
        cache.put_many(key, [(0, Sample(f"{key[-3:]}.0", 2, 1)), (1, Sample(f"{key[-3:]}.1", 2, 1))], "me", 1, 1)
    reads = []
    many = cache.get_paid_many
    cache.get_paid_many = lambda wants: reads.append(len(wants)) or many(wants)

    async def go():
        writer = GroupCommit(cache)
        writer.put(keys[250], [(0, Sample("pending", 2, 1))])  # put, not yet committed
        got = await asyncio.gather(*(writer.lookup(key, range(0, 3)) for key in keys))
        await writer.aclose()
        return got

    got = asyncio.run(go())
    assert reads == [300]  # one read for the turn (two statements of at most 256 keys inside)
    assert got[7] == {0: (Sample("007.0", 2, 1), "me", 1, 1), 1: (Sample("007.1", 2, 1), "me", 0, 0)}
    assert got[250] == {0: (Sample("pending", 2, 1), "", 0, 0)} and got[299] == {}
    assert all(len(g) == 2 for g in got[:200])
    cache.close()


def test_a_damaged_row_fails_every_lookup_of_its_turn(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    SampleCache(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO calls VALUES (?, 0, 1, 'not json', '', 0, 0)", (KEY,))
    db.commit()
    db.close()
    cache = SampleCache(path)

    async def go():
        writer = GroupCommit(cache)
        try:
            return await asyncio.gather(writer.lookup(KEY, range(1)), return_exceptions=True)
        finally:
            await writer.aclose()

    (err,) = asyncio.run(go())
    assert isinstance(err, CacheError) and "damaged row" in str(err)
    cache.close()


def test_a_run_alone_on_a_fresh_cache_reads_only_repeats_and_gets_what_reading_everything_gets(tmp_path,
                                                                                                monkeypatch):
    """End to end: skipping the reads of keys a fresh file cannot hold changes no answer and no count;
    a file with rows when the run starts has every key read."""
    from llmnet import loads_network
    from llmnet.execute import RunConfig, run_network
    from llmnet.tasks.datasets import arithmetic

    net = loads_network("""
models: {sim: {backend: simulated, model: s}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
  more: {kind: generator, model: sim, samples: 5}
  vote: {kind: vote, inputs: [gen, more]}
""")  # ``more`` asks what ``gen`` asked: seeds 0-2 are hits (a read, unless still uncommitted), 3-4 are paid
    queries = arithmetic(60)
    reads = []
    many = SampleCache.get_paid_many
    monkeypatch.setattr(SampleCache, "get_paid_many", lambda self, wants: reads.extend(wants) or many(self, wants))

    def run(path):
        reads.clear()
        rep = run_network(net, queries, RunConfig(progress=False, cache_path=path))
        return rep, len(reads)

    skipping, skipped_reads = run(tmp_path / "a.sqlite")
    with monkeypatch.context() as m:
        claim = claims_module.ClaimFile.claim
        m.setattr(claims_module.ClaimFile, "claim",
                  lambda self, byte, mine=None: min(claim(self, byte, mine), CLAIMED_ALONE))
        reading, all_reads = run(tmp_path / "b.sqlite")
    count = ("calls", "samples", "cache_hits", "prompt_tokens", "completion_tokens", "correct")
    assert {k: skipping.summary[k] for k in count} == {k: reading.summary[k] for k in count}
    assert [r["answer"] for r in skipping.results] == [r["answer"] for r in reading.results]
    assert skipping.summary["cache_hits"] == 3 * len(queries) and skipping.summary["calls"] == 2 * len(queries)
    assert all_reads == 2 * len(queries)  # reading everything: both lookups of each query
    assert skipped_reads <= len(queries)  # skipping: never the first (the file cannot hold it); the second
    # is read only if the first's samples were committed by then (else they come from memory)
    warm, warm_reads = run(tmp_path / "a.sqlite")  # rows in the file at the start: every key is read
    assert warm_reads >= len(queries) and warm.summary["cache_hits"] == 8 * len(queries)


def test_a_forked_child_does_not_think_it_is_alone_with_its_parents_claims(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SampleCache(path)
    assert cache.claim(KEY) == CLAIMED_NEW
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: opens the cache afresh, so the parent steps down and its claim is a lock
        try:
            child = SampleCache(path)
            os.write(write, str(child.claim(KEY)).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 8) == b"0"
    cache.close()


def test_rows_remembered_from_a_lookup_are_dropped_when_any_cache_of_the_process_writes_the_key(tmp_path):
    """While alone, a lookup's rows answer the next query on that key without a read; another cache
    (another session) of the same process writing the key must make the next query read again."""
    path = tmp_path / "c.sqlite"
    seed_file = SampleCache(path)
    seed_file.put_many("cd" * 32, [(0, Sample("other", 1, 1))])  # not fresh: keys are looked up
    seed_file.close()
    first, second = SampleCache(path), SampleCache(path)

    async def look(cache):
        writer = GroupCommit(cache)
        assert cache.claim(KEY) == CLAIMED_ALONE
        try:
            known = cache.known_rows(KEY, range(3))
            return known if known is not None else await writer.lookup(KEY, range(3)), known is not None
        finally:
            cache.release(KEY)
            await writer.aclose()

    assert asyncio.run(look(first)) == ({}, False)  # read: nothing there
    assert asyncio.run(look(first)) == ({}, True)  # remembered: no read
    second.put_many(KEY, [(0, Sample("paid by the other session", 2, 1))], "them", 1, 1)
    rows, remembered = asyncio.run(look(first))
    assert not remembered and rows[0][0].text == "paid by the other session"
    first.close()
    second.close()


def test_a_cache_opened_through_a_symlink_shares_the_real_files_claims(tmp_path):
    path = tmp_path / "real.sqlite"
    cache = SampleCache(path)
    (tmp_path / "alias.sqlite").symlink_to(path)
    assert cache.claim(KEY)
    child = other_process(tmp_path / "alias.sqlite", KEY)
    assert child.communicate(timeout=60)[0].split() == ["0"]  # one file, one set of claims
    cache.close()


def test_a_forked_child_cannot_use_or_break_the_cache_it_inherited(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SampleCache(path)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                cache.claim("cd" * 32)
                said = "claimed"
            except CacheError as exc:
                said = "refused" if "forked" in str(exc) else "other"
            own = SampleCache(path)
            own.claim(KEY)
            cache.close()  # the inherited object: must not drop the child's own locks
            probe = other_process(path, KEY)
            os.write(write, f"{said} {probe.communicate(timeout=60)[0].strip()}".encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 64).decode() == "refused 0"
    cache.close()


def test_a_claims_file_deleted_under_a_process_alone_is_said_and_every_key_is_read_again(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    cache = SampleCache(path)
    assert cache.claim(KEY) == CLAIMED_NEW
    cache.release(KEY)
    os.unlink(f"{path}-claims")  # taken for a stale lock file
    newcomer = other_process(path, "cd" * 32)
    newcomer.communicate(timeout=60)
    deadline = time.monotonic() + 5
    while cache.alone and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cache.alone and cache.claim(KEY) == CLAIMED  # reads everything from now on
    assert any("deleted or replaced" in r.getMessage() for r in caplog.records)
    cache.close()


def test_rows_another_writer_put_first_are_said_not_silently_dropped(tmp_path, caplog):
    cache = SampleCache(tmp_path / "c.sqlite")
    cache.put_many(KEY, [(0, Sample("first", 1, 1))])
    cache.put_many(KEY, [(0, Sample("second", 1, 1)), (1, Sample("x", 1, 1))])  # one call row, seed 0 taken
    assert cache.get_many(KEY, [0, 1]) == {0: Sample("first", 1, 1)}
    assert any("already held 1 of 1 call rows" in r.getMessage() for r in caplog.records)
    cache.close()


def test_a_turn_whose_read_fails_unexpectedly_fails_its_lookups_rather_than_leaving_them_waiting(tmp_path):
    """Any error in a turn's read (not only a CacheError) reaches every lookup of the turn: a query
    never waits forever for a read that is over."""
    cache = SampleCache(tmp_path / "c.sqlite")

    def broken(wants):
        raise RuntimeError("a bug in the read")

    cache.get_paid_many = broken

    async def go():
        writer = GroupCommit(cache)
        try:
            lookups = asyncio.gather(writer.lookup(KEY, range(1)), writer.lookup("ef" * 32, range(2)),
                                     return_exceptions=True)
            return await asyncio.wait_for(lookups, 10)
        finally:
            await writer.aclose()

    got = asyncio.run(go())
    assert [type(e) for e in got] == [RuntimeError, RuntimeError] and "a bug in the read" in str(got[0])
    cache.close()


def _engine_on(path, k=3):
    from llmnet import loads_network
    from llmnet.execute.engine import Engine

    net = loads_network(f"""
models: {{sim: {{backend: simulated, model: s}}}}
task: {{prompt: "Q: {{question}}\\nA:"}}
nodes:
  gen: {{kind: generator, model: sim, samples: {k}}}
""")
    return Engine(net, SampleCache(path))


def _request(question, k=3):
    from llmnet.backends.base import Request
    from llmnet.tasks.query import Query

    return Request(f"Q: {question}\nA:", k, 0, 0.7, 1.0, 64, (), "completion", None, None, "generate",
                   Query(id=question, question=question, answer="1"))


def test_samples_already_at_hand_are_served_without_a_turn_or_a_claim(tmp_path, monkeypatch):
    """A query whose samples this process has in memory (put moments ago, or remembered) pays for
    nothing: it neither queues behind the query on the same prompt nor claims the key, and it is
    booked as cache hits."""
    from llmnet.backends.base import request_key
    from llmnet.execute.usage import Usage

    engine = _engine_on(tmp_path / "c.sqlite")
    claims, turns = [], []
    claim, turn = SampleCache.claim, type(engine)._turn
    monkeypatch.setattr(SampleCache, "claim", lambda self, key: claims.append(key) or claim(self, key))

    async def counted_turn(self, key, waiting):
        turns.append(key)
        return await turn(self, key, waiting)

    monkeypatch.setattr(type(engine), "_turn", counted_turn)

    async def go():
        paid, hit, more = Usage(), Usage(), Usage()
        first = await engine.samples("sim", _request("1+0"), paid, "q1\x1fgen")
        key = request_key(engine.models["sim"].backend.cache_identity(_request("1+0")), _request("1+0"))
        engine._key_turns[key] = []  # as if another query were on this prompt
        again = await asyncio.wait_for(engine.samples("sim", _request("1+0"), hit, "q2\x1fgen"), 10)  # no turn
        del engine._key_turns[key]
        bigger = await engine.samples("sim", _request("1+0", 5), more, "q3\x1fgen")  # seeds 3, 4 are not here
        await engine.aclose()
        return first, again, bigger, paid, hit, more

    first, again, bigger, paid, hit, more = asyncio.run(go())
    assert again == first and bigger[:3] == first
    assert (paid.calls, paid.cache_hits, hit.calls, hit.cache_hits, more.calls, more.cache_hits) == (1, 0, 0, 3, 1, 3)
    assert len(claims) == 2 and turns == []  # the first and the third query claimed; the second took nothing
    engine.cache.close()


def test_a_fresh_cache_serves_its_own_committed_samples_without_reading_the_file(tmp_path, monkeypatch):
    """Alone on a fresh file, the rows this process committed are all the file holds: a later query on
    the same prompt reads nothing. A file with rows at the start (a resumed run) is read as before."""
    from llmnet.execute.usage import Usage

    reads = []
    many = SampleCache.get_paid_many
    monkeypatch.setattr(SampleCache, "get_paid_many", lambda self, wants: reads.extend(wants) or many(self, wants))

    async def go(engine):
        for q in ("1+1", "2+2", "3+3"):
            await engine.samples("sim", _request(q), Usage(), f"{q}\x1fgen")
        await engine.committed()  # on disk, out of the pending overlay
        usage = Usage()
        got = [await engine.samples("sim", _request(q), usage, f"again {q}\x1fgen") for q in ("1+1", "2+2", "3+3")]
        await engine.aclose()
        return got, usage

    engine = _engine_on(tmp_path / "fresh.sqlite")
    assert engine.cache.fresh
    got, usage = asyncio.run(go(engine))
    assert reads == [] and (usage.cache_hits, usage.calls) == (9, 0)
    engine.cache.close()
    warm = _engine_on(tmp_path / "fresh.sqlite")  # rows there already: not fresh
    assert not warm.cache.fresh
    again, usage = asyncio.run(go(warm))
    assert len(reads) == 3 and again == got and (usage.cache_hits, usage.calls) == (9, 0)
    warm.cache.close()


def test_a_commit_that_finds_its_rows_already_written_keeps_none_of_them_in_memory(tmp_path, caplog):
    """A row written into a fresh file by something that does not claim keys wins over the row this
    process paid for (the file keeps the first): the next query on that prompt gets the file's
    sample, not the one this process put and remembered."""
    import sqlite3

    from llmnet.backends.base import request_key
    from llmnet.execute.usage import Usage

    path = tmp_path / "c.sqlite"
    engine = _engine_on(path)
    assert engine.cache.fresh

    async def go():
        first = await engine.samples("sim", _request("4+4"), Usage(), "q1\x1fgen")
        key = request_key(engine.models["sim"].backend.cache_identity(_request("4+4")), _request("4+4"))
        db = sqlite3.connect(path)  # meanwhile, a hand-written row for the same key and seeds
        db.execute("INSERT INTO calls VALUES (?, 0, 3, ?, 'by hand', 1, 1)",
                   (key, '[["written first",1,1],["b",1,1],["c",1,1]]'))
        db.commit()
        db.close()
        await engine.committed()
        again = await engine.samples("sim", _request("4+4"), Usage(), "q2\x1fgen")
        await engine.aclose()
        return first, again

    first, again = asyncio.run(go())
    assert first[0].text != "written first" and [s.text for s in again] == ["written first", "b", "c"]
    assert any("already held 1 of 1 call rows" in r.getMessage() for r in caplog.records)
    engine.cache.close()


def test_a_commit_timer_that_fires_after_the_cache_closed_does_nothing(tmp_path):
    """A run closes its cache while a commit it scheduled for later is still on the loop's clock
    (asyncio.run then runs the loop a little longer): the timer must find nothing to do, not fail."""
    from llmnet.execute import commits

    cache = SampleCache(tmp_path / "c.sqlite")
    errors = []

    async def go():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        writer = GroupCommit(cache)
        writer.put(KEY, [(0, Sample("x", 1, 1))])
        await writer.flushed()  # a commit has just started: the next put waits COMMIT_EVERY_S for its own
        writer.put("cd" * 32, [(0, Sample("y", 1, 1))])
        await writer.aclose()  # commits it at once; the timer stays on the clock
        cache.close()
        await asyncio.sleep(commits.COMMIT_EVERY_S + 0.1)

    asyncio.run(go())
    assert errors == []


def test_a_repeat_served_from_its_one_row_in_memory_gets_and_books_what_the_general_path_does(tmp_path,
                                                                                          monkeypatch):
    """A prompt asked again while its call's row is pending, and again once committed, is served from
    that one row (``GroupCommit.row_at_hand``): the same samples, hits, cached tokens and dollars as
    through ``at_hand`` and ``_book``, with no call and no claim."""
    from llmnet import loads_network
    from llmnet.execute.engine import Engine
    from llmnet.execute.usage import Usage

    net = loads_network("""
models: {sim: {backend: simulated, model: s, price: {input: 2, output: 3}}}
task: {prompt: "Q: {question}\\nA:"}
nodes:
  gen: {kind: generator, model: sim, samples: 3}
""")
    claims = []
    claim = SampleCache.claim
    monkeypatch.setattr(SampleCache, "claim", lambda self, key: claims.append(key) or claim(self, key))

    async def go(engine):
        paid, pending, committed = Usage(), Usage(), Usage()
        first = await engine.samples("sim", _request("7*6"), paid, "7*6\x1fgen")
        again = await engine.samples("sim", _request("7*6"), pending, "again\x1fgen")  # not yet committed
        await engine.committed()
        late = await engine.samples("sim", _request("7*6"), committed, "late\x1fgen")
        await engine.aclose()
        return first, again, late, paid, pending, committed

    fast = Engine(net, SampleCache(tmp_path / "fast.sqlite"))
    first, again, late, paid, pending, committed = asyncio.run(go(fast))
    assert len(claims) == 1 and paid.calls == 1 and again == late == first
    assert pending == committed and (pending.calls, pending.cache_hits, pending.samples) == (0, 3, 3)
    assert pending.cached_tokens == paid.prompt_tokens + paid.completion_tokens > 0
    assert pending.cached_cost_usd == pytest.approx(paid.cost_usd) and pending.cached_cost_usd > 0
    fast.cache.close()

    monkeypatch.setattr(GroupCommit, "row_at_hand", lambda self, key, seeds: None)  # the general path only
    general = Engine(net, SampleCache(tmp_path / "general.sqlite"))
    got = asyncio.run(go(general))
    assert [[s.text for s in g] for g in got[:3]] == [[s.text for s in g] for g in (first, again, late)]
    assert got[4:] == (pending, committed)
    assert {**got[3].to_dict(), "latency_s": 0} == {**paid.to_dict(), "latency_s": 0}
    general.cache.close()


def test_a_fresh_cache_keeps_its_newest_committed_rows_within_a_memory_budget(tmp_path, monkeypatch):
    """The rows kept after a commit (``GroupCommit.committed``) are bounded in bytes, the oldest going
    first: a prompt whose rows were dropped is read from the file again, a newer one is not."""
    from llmnet.execute import commits
    from llmnet.execute.usage import Usage

    def cost(row):
        return len(row[0]) + len(row[3]) + len(row[4]) + commits.ROW_BYTES

    reads = []
    many = SampleCache.get_paid_many
    monkeypatch.setattr(SampleCache, "get_paid_many", lambda self, wants: reads.extend(wants) or many(self, wants))
    engine = _engine_on(tmp_path / "c.sqlite")
    questions = [f"{i}+{i}" for i in range(6)]

    async def go():
        for q in questions:
            await engine.samples("sim", _request(q), Usage(), f"{q}\x1fgen")
            await engine.committed()  # a commit each: the first committed are the oldest
        writer = engine._writer
        kept = dict(writer.committed)
        assert len(kept) == 6 and writer._kept_bytes == sum(cost(r) for rows in kept.values() for r in rows)
        monkeypatch.setattr(commits, "COMMITTED_BYTES", writer._kept_bytes - 1)  # no room for one more key
        await engine.samples("sim", _request("new"), Usage(), "new\x1fgen")
        await engine.committed()
        now, old = list(writer.committed), list(kept)
        dropped = len(old) + 1 - len(now)
        assert dropped >= 1 and now[:-1] == old[dropped:] and now[-1] not in kept  # the oldest went, only they
        assert writer._kept_bytes == sum(cost(r) for rows in writer.committed.values() for r in rows)
        assert writer._kept_bytes <= commits.COMMITTED_BYTES < writer._kept_bytes + cost(kept[old[dropped - 1]][0])
        usage = Usage()
        await engine.samples("sim", _request(questions[-1]), usage, "again\x1fgen")  # kept: nothing read
        assert reads == [] and usage.cache_hits == 3
        await engine.samples("sim", _request(questions[0]), usage, "again\x1fgen")  # dropped: read
        assert len(reads) == 1 and usage.cache_hits == 6 and usage.calls == 0
        await engine.aclose()

    asyncio.run(go())
    engine.cache.close()
