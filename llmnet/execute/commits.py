"""Group commits of fresh samples: one transaction per turn of the event loop.

``put`` adds a query's fresh samples to the open batch and resolves once they are
committed. The batch is committed once per turn of the event loop, after every task
that was ready in that turn had its say, so under load one transaction carries many
queries' samples, and a lone sample waits for no timer. The transaction is a WAL append
on the cache's own connection (no fsync: ``synchronous=NORMAL``), so its page cache stays
warm for the reads; the fsyncing work, checkpoints, runs on a thread, off the loop.
The executor awaits ``put`` before it uses a fresh sample, which keeps the cache's
promise: a sample that was paid for is on disk before anything depends on it, so a
killed run never pays for it twice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

from llmnet.backends.base import Sample
from llmnet.errors import CacheError
from llmnet.execute.cache import SampleCache

CHECKPOINT_ROWS = 20_000  # a passive checkpoint on a thread after about this many rows


class GroupCommit:
    """Batches ``put``s to one ``SampleCache`` from one event loop; ``aclose`` commits what is left."""

    def __init__(self, cache: SampleCache):
        self.cache = cache
        self._rows: list[tuple] = []
        self._meta: list[tuple] = []  # (key, seed, JSON) for samples a server said more about
        self._waiting: list[asyncio.Future] = []
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future | None = None
        self.commits = 0  # transactions so far (rows / commits is the batch size)
        cache.stop_autocheckpoint()

    async def put(self, key: str, items: list[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
                  attempts: int = 0) -> None:
        """Commit ``items`` (seed, sample) under ``key``; returns once they are on disk. The first
        sample carries the call's ``calls`` and ``attempts`` and all say who paid (``SampleCache.put_many``)."""
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)  # after this turn's ready tasks
        self._rows.extend([(key, seed, s.text, s.prompt_tokens, s.completion_tokens, paid_by,
                            calls if i == 0 else 0, attempts if i == 0 else 0) for i, (seed, s) in enumerate(items)])
        self._meta.extend([(key, seed, json.dumps(m)) for seed, s in items if (m := s.meta())])
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        await asyncio.shield(done)  # a cancelled caller's rows are committed all the same

    def _flush(self) -> None:
        rows, meta, waiting = self._rows, self._meta, self._waiting
        self._rows, self._meta, self._waiting = [], [], []
        error = None
        if rows:
            try:
                self.cache.put_rows(rows, meta)
                self.commits += 1
            except CacheError as exc:
                error = exc
            except Exception as exc:  # anything else must still reach the waiters, never leave them hanging
                error = CacheError(f"sample cache {self.cache.path}: could not write ({type(exc).__name__}: {exc})")
        for fut in waiting:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)
        self._since_checkpoint += len(rows)
        if self._since_checkpoint >= CHECKPOINT_ROWS and self._checkpoint is None:
            self._since_checkpoint = 0
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(_checkpoint, self.cache.path))
            self._checkpoint.add_done_callback(self._checkpointed)

    def _checkpointed(self, f: asyncio.Future) -> None:
        self._checkpoint = None
        f.exception()  # a failed passive checkpoint is harmless: the next one (or closing) catches up

    async def aclose(self) -> None:
        """Commit everything put so far and wait for a running checkpoint."""
        if self._rows:
            self._flush()
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])


def _checkpoint(path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()

