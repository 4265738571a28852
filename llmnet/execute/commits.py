"""The event loop's access to the sample cache: write-behind group commits of fresh samples on
a dedicated writer thread, and lookups read a turn at a time.

``put`` (no await) packs a call's fresh samples into a ``calls`` row and adds it to the open
batch and to ``pending``, an in-memory overlay the executor reads together with the cache, so
a sample is usable at once and never paid twice in this process. The batch goes to the writer
thread ``COMMIT_EVERY_S`` after the last commit started, or as soon as ``COMMIT_PUTS`` calls
wait, or when someone waits for it; the thread commits it in one transaction on its own
connection (a WAL append, no fsync: ``synchronous=NORMAL``) while the loop goes on, and
checkpoints the WAL now and then. Nothing on the event loop waits for the disk.

``lookup`` reads the cached samples of a key; every lookup of one turn of the loop is one
statement (``SampleCache.get_paid_many``). A process alone on its cache
(``llmnet.execute.claims``) needs fewer: a key the file cannot hold is not looked up at all,
the file's rows of a key looked up once are remembered (``SampleCache.remember``) until this
process writes more of it, and on a file that was empty when it became alone the rows it
committed itself are kept (``committed_rows``; the newest, up to ``COMMITTED_BYTES``): nobody
else wrote there. A query whose samples are all in memory this way (``at_hand``) takes no claim
and no turn: it pays for nothing, and a row never changes once in the file. The usual repeat,
one call's row holding exactly the seeds asked for (``row_at_hand``), is served from that row
and the samples its call returned (``SampleCache.pack`` keeps them as the row's decoding).
Measured on bench_executor's 100k-query cold run, where 59% of the prompts repeat: 8.4k lookups
and 5k queries queued behind another on the same prompt with neither, 2k and 0.2k with the
committed rows kept up to 16,384 keys and then dropped all at once, 0.4k and 0.1k with the
newest kept up to 32 MiB (which holds all 41k keys of that run: 655 bytes a key).

What stays on disk after ``kill -9``: every committed batch, never a torn one (SQLite
transactions); the batch being committed and the one being filled may be lost, and the
executor pays for those samples again when the run resumes. Two things wait for a commit,
so that nothing that depends on a sample is visible before the sample itself:

- ``release(key)``: another process's claim on a key (``SampleCache.claim``) is granted only
  after this process's samples of that key are committed, so it reads them instead of paying;
- ``after_commit(fn)``: ``fn`` runs once everything put so far is committed; a run writes a
  query's line to ``results.jsonl`` this way, so a finished query's samples are always in the
  cache and a resumed run's accounting matches the rows (``tests/execute/test_resume.py``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from llmnet.backends.base import Sample
from llmnet.errors import CacheError
from llmnet.execute.cache import PaidRow, SampleCache, call_rows

CHECKPOINT_ROWS = 20_000  # the writer thread checkpoints the WAL (passive) after about this many rows
COMMIT_EVERY_S = 0.2  # a commit starts this long after the last one started, or ...
COMMIT_PUTS = 4096  # ... once this many calls' samples wait, or when someone waits for it (``wait``, ``aclose``)
BACKLOG_KEYS = 512  # keys put but not committed, beyond which the executor waits for a commit (``wait``) ...
BACKLOG_KEYS_ALONE = 8192  # ... or while the process is alone on the cache, when claims cost nothing (but
# a newcomer waits while they become locks: about 0.2 s for 8,192, the kernel walking its list for each)
COMMITTED_BYTES = 32 << 20  # the rows a process alone on a fresh cache keeps of those it committed (the oldest go)
ROW_BYTES = 480  # a kept row's memory beyond its strings' characters (its tuples, the strings' headers, the dict's
# entry: measured at 655 bytes a key, 183 of them characters, over bench_executor's 100k-query cold run)


def _row_bytes(row: tuple) -> int:
    """The memory a kept ``calls`` row is reckoned at: its key's, samples' and payer's characters and ROW_BYTES."""
    return len(row[0]) + len(row[3]) + len(row[4]) + ROW_BYTES


class GroupCommit:
    """Write-behind batches of ``put``s to one ``SampleCache`` from one event loop; ``aclose`` commits the rest."""

    def __init__(self, cache: SampleCache):
        self.cache = cache
        self.pending: dict[str, list[tuple]] = {}  # put, not yet committed: key -> its ``calls`` rows
        self.committed: OrderedDict[str, tuple] = OrderedDict()  # while alone on a fresh file: key -> its rows
        # committed here, the oldest first, up to COMMITTED_BYTES (``_kept_bytes``, as ``_row_bytes`` reckons them)
        self._kept_bytes = 0
        self.commits = 0  # transactions so far (rows / commits is the batch size)
        self.error: CacheError | None = None  # the first failed commit: the run must stop
        self._puts: list[tuple] = []  # ``calls`` rows not yet handed to the writer
        self._releases: list[str] = []  # claims to give up once the rows put so far are committed
        self._after: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._urgent = False  # a commit is asked for now, however soon after the last (COMMIT_PUTS)
        self._started = float("-inf")  # when the last commit started (the loop's clock)
        self._busy: asyncio.Future | None = None  # the commit running on the writer thread
        self._drained: asyncio.Future | None = None  # resolved by the next finished commit, for ``wait``
        self._wants: list[tuple[str, range]] = []  # this turn's lookups (``lookup``), read together
        self._found: list[asyncio.Future] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="llmnet-cache-writer")
        self._db = None  # the writer thread's connection, opened there
        self._since_checkpoint = 0

    def put(self, key: str, items: list[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
            attempts: int = 0) -> None:
        """Queue ``items`` (seed, sample) under ``key``; the first sample carries the call's ``calls``
        and ``attempts`` and all say who paid (as ``SampleCache.put_many``). Packed into ``calls`` rows
        at once: a row is a tuple of strings and numbers, which the cyclic garbage collector soon stops
        looking at, where the samples and their lists would be traversed by every collection until the
        commit (measured at 100k queries: 0.65 s of collections in a 6.5 s run before). Readable at
        once (``rows_of``)."""
        self._put(key, call_rows(key, items, paid_by, calls, attempts))

    def put_call(self, key: str, seed: int, samples: Sequence[Sample], paid_by: str, calls: int,
                 attempts: int) -> None:
        """``put`` of one call's samples (seeds ``seed``, ``seed + 1``, ...): its one row, made directly."""
        self._put(key, [(key, seed, len(samples), self.cache.pack(samples), paid_by, calls, attempts)])

    def _put(self, key: str, rows: list[tuple]) -> None:
        if self.error is not None:
            raise self.error
        self.cache.mark_written(key)  # here rather than on the writer thread, whose Python work holds up the loop
        waiting = self.pending.get(key)
        if waiting is None:
            self.pending[key] = rows
        else:
            waiting.extend(rows)
        self._puts.extend(rows)
        if not self._scheduled:
            self._schedule()
        elif not self._urgent and len(self._puts) >= COMMIT_PUTS and self._busy is None:
            self._urgent = True  # enough for a commit: no need to wait longer
            self._loop.call_soon(self._flush)

    def rows_of(self, key: str) -> dict[int, PaidRow]:
        """The samples of ``key`` put but not yet committed, as ``SampleCache.get_paid`` gives them
        (a seed put twice: the first, as the file keeps it)."""
        return self.cache.unpack([row[1:] for row in self.pending.get(key, ())])

    def lookup(self, key: str, seeds: range) -> asyncio.Future:
        """The cached samples of ``key`` (as ``SampleCache.get_paid``, with what is put but not yet
        committed on top): every lookup of a turn of the event loop is read in one statement, after
        the turn's ready tasks had their say. The caller holds ``key``'s claim and its turn."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        found = loop.create_future()
        if not self._wants:
            loop.call_soon(self._read)
        self._wants.append((key, seeds))
        self._found.append(found)
        return found

    def at_hand(self, key: str, seeds: range) -> dict[int, PaidRow] | None:
        """Every sample of ``key`` in ``seeds`` when this process has them in memory, else None: put and
        not yet committed (``pending``), the file's rows remembered while alone (``SampleCache.known_rows``)
        or rows this process committed to a fresh file (``committed_rows``). A hit needs no claim: it pays
        for nothing, and a row in the file never changes once written."""
        pend = self.pending.get(key)
        if pend is not None:
            return self._covering(pend, seeds)
        rows = self.cache.known_rows(key, seeds)
        if rows is not None:
            return rows if len(rows) == len(seeds) else None
        return self.committed_rows(key, seeds) if key in self.committed else None

    def row_at_hand(self, key: str, seeds: range) -> tuple | None:
        """The ``calls`` row of ``key`` that holds exactly ``seeds``, when it is the only one put and not
        yet committed, or else the only one this process committed to a fresh file (as ``at_hand``):
        the usual repeat of a prompt, served without building a row per sample."""
        rows = self.pending.get(key)
        if rows is None:
            rows = self.committed.get(key)
        if rows is not None and len(rows) == 1:
            row = rows[0]
            if row[1] == seeds.start and row[2] == len(seeds):
                return row
        return None

    def committed_rows(self, key: str, seeds: range) -> dict[int, PaidRow] | None:
        """The samples of ``key`` in ``seeds`` as this process committed them while alone on a fresh
        file, when they cover ``seeds``: the file holds exactly those (nothing else wrote them first:
        a commit that found any of its rows already there keeps none here), and a row once written
        never changes, so nothing needs reading. Remembered as a lookup's rows are
        (``SampleCache.remember``) while still alone."""
        rows = self.committed.get(key)
        got = None if rows is None else self._covering(rows, seeds)
        if got is not None and self.cache.alone:
            self.cache.remember(key, seeds, got)
        return got

    def _covering(self, rows: list[tuple] | tuple, seeds: range) -> dict[int, PaidRow] | None:
        """The samples of ``calls`` rows of one key in ``seeds`` (the first row holding a seed wins, as
        in the file) when they cover every seed, else None."""
        got = self.cache.unpack([row[1:] for row in rows], seeds.start, seeds.stop - 1)
        return got if len(got) == len(seeds) else None

    def _read(self) -> None:
        wants, found = self._wants, self._found
        self._wants, self._found = [], []
        try:
            got = self.cache.get_paid_many(wants)
        except Exception as exc:  # every lookup of the turn fails with it (none is left waiting forever)
            for f in found:
                if not f.done():
                    f.set_exception(CacheError(str(exc)) if isinstance(exc, CacheError) else exc)
            return
        pending, alone = self.pending, self.cache.alone
        for (key, seeds), f, rows in zip(wants, found, got):
            if key in pending:  # put moments ago, not yet committed (read with the file, at one moment)
                pend = self.rows_of(key)
                rows.update((s, pend[s]) for s in seeds if s in pend)
            elif alone:  # nobody else writes: the file's rows of key in this range until this process writes more
                self.cache.remember(key, seeds, rows)
            if not f.done():  # (a query cancelled meanwhile)
                f.set_result(rows)

    @property
    def backlogged(self) -> bool:
        """Too many keys wait for a commit. A query that finds no free turn of the loop (an instant
        backend, the cache) could otherwise put the whole run before any commit. Each waiting key
        holds a claim, and a claim costs time in proportion to the claims held (POSIX locks are a
        list per file), so the bound is tight while claims are locks; while the process is alone on
        the cache they are only counted, and a larger bound lets commits grow: measured on
        bench_executor's 10k-query cold run, a commit of 300 call rows cost 6.4 us a row against 3.1
        us at 3,000 (with random keys most of the index's pages change in each commit); on its 100k
        run, 9 commits of up to 8,192 rows cost the writer 0.20 s against 0.27 s for 15 of up to 4,096."""
        return len(self.pending) >= (BACKLOG_KEYS_ALONE if self.cache.alone else BACKLOG_KEYS)

    async def wait(self) -> None:
        """Until the commit under way (or one started now) has finished."""
        if self._busy is None:
            self._flush()
        if self._busy is not None:
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)

    async def flushed(self) -> None:
        """Until everything put so far is committed: at most the commit under way and the next one.
        Raises the ``CacheError`` of a failed commit."""
        target = self.commits + (self._busy is not None) + bool(self._puts)
        while self.error is None and self.commits < target:
            await self.wait()
        if self.error is not None:
            raise self.error

    def release(self, key: str) -> None:
        """Give up this process's claim on ``key`` once its samples put so far are committed."""
        if key in self.pending:
            self._releases.append(key)
            if not self._scheduled:
                self._schedule()
        else:
            self.cache.release(key)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (on the loop) once everything put so far is committed; at once if it is."""
        if not self.pending:
            fn()
        else:
            self._after.append(fn)
            self._schedule()

    def _schedule(self) -> None:
        """A commit after this turn's ready tasks had their say, and ``COMMIT_EVERY_S`` after the last
        one started. With random keys a commit changes pages all over the table, so its cost grows
        with the table rather than with its rows: measured at 25k rows, 7.6 us a row in commits of
        500 rows against 3.9 us in commits of 3,000. Waiting for more rows (``COMMIT_PUTS``) or a
        little time makes commits larger when samples come fast, and costs a slow run nothing but
        that interval before its samples are on disk."""
        if not self._scheduled and self._busy is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            delay = self._started + COMMIT_EVERY_S - loop.time()
            if delay > 0 and len(self._puts) < COMMIT_PUTS:
                loop.call_later(delay, self._flush)
            else:
                loop.call_soon(self._flush)
            self._scheduled = True

    def _flush(self) -> None:
        self._scheduled = self._urgent = False
        if self._busy is not None:  # _committed flushes again
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        puts, releases, after = self._puts, self._releases, self._after
        self._puts, self._releases, self._after = [], [], []
        if not puts:  # everything put earlier is committed
            self._done(puts, releases, after)
            return
        self._started = self._loop.time()
        self._busy = self._loop.run_in_executor(self._pool, self._write, puts)
        self._busy.add_done_callback(lambda f: self._committed(f, puts, releases, after))

    def _write(self, puts: list[tuple]) -> bool:
        """On the writer thread: the ``calls`` rows put, in one transaction, and a passive checkpoint
        now and then. False when the file already held some of the rows (``SampleCache.put_rows``)."""
        if self._db is None:
            self._db = self.cache.connect_writer()
        kept = self.cache.put_rows(puts, self._db)
        self._since_checkpoint += len(puts)
        if self._since_checkpoint >= CHECKPOINT_ROWS:
            self._since_checkpoint = 0
            self.cache.checkpoint(self._db)
        return kept

    def _committed(self, f: asyncio.Future, puts: list[tuple], releases: list[str],
                   after: list[Callable[[], None]]) -> None:
        self._busy = None
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.set_result(None)
        exc = None if f.cancelled() else f.exception()
        if f.cancelled() or exc is not None:
            if self.error is None:
                self.error = exc if isinstance(exc, CacheError) else CacheError(
                    f"sample cache {self.cache.path}: could not write ({type(exc).__name__}: {exc})")
            for key in releases:  # nothing waits on a failed run's claims
                self.cache.release(key)
            self._after.clear()  # what depends on the lost rows never becomes visible
            return
        self.commits += 1
        self._done(puts, releases, after, f.result())
        if self._puts or self._releases or self._after:
            self._schedule()

    def _done(self, puts: list[tuple], releases: list[str], after: list[Callable[[], None]],
              all_kept: bool = True) -> None:
        pending, committed = self.pending, None
        if puts:  # (none: a commit timer that fired after the last commit, perhaps once the cache closed)
            if not all_kept:  # something else wrote some of these keys first (another cache of this process,
                for row in puts:  # a hand-written row): what the file holds of them is not what was put here
                    self._forget(row[0])
            elif self.cache.fresh:
                committed = self.committed
        for row in puts:
            if committed is not None:
                had = committed.get(row[0])
                committed[row[0]] = (row,) if had is None else had + (row,)
                self._kept_bytes += _row_bytes(row)
            waiting = pending.get(row[0])
            if waiting is not None:
                if len(waiting) == 1:
                    del pending[row[0]]
                else:
                    for i, other in enumerate(waiting):
                        if other is row:
                            del waiting[i]
                            break
        while self._kept_bytes > COMMITTED_BYTES and committed:  # the oldest go
            self._forget(next(iter(committed)))
        if releases:
            self.cache.release_all(releases)
        for fn in after:
            fn()

    def _forget(self, key: str) -> None:
        """``key``'s committed rows are no longer kept."""
        rows = self.committed.pop(key, None)
        if rows is not None:
            self._kept_bytes -= sum(map(_row_bytes, rows))

    async def aclose(self) -> None:
        """Commit everything put so far, run what waits for it, and stop the writer thread.
        Raises the ``CacheError`` of a failed commit."""
        try:
            while self.error is None and (self._busy is not None or self._puts or self._releases or self._after):
                if self._busy is None:
                    self._flush()
                if self._busy is not None:
                    await asyncio.wait([self._busy])
        finally:
            if self._busy is None:
                await asyncio.get_running_loop().run_in_executor(self._pool, self._close_db)
            self._pool.shutdown(wait=False)
        if self.error is not None:
            raise self.error

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
