"""The per-sample cache: SQLite in WAL mode, one row per (request identity, sample seed).

Key = hash(model identity, prompt, system, api, sampling parameters without n and seed,
constrained choices, role context) and the sample's own seed (base seed + i). Asking
for K=10 after K=5 finds samples 0..4 and pays only for 5..9. The executor writes fresh
samples through write-behind group commits on a writer thread (``llmnet.execute.commits``):
a killed run loses at most the batch not yet committed, never corrupts the file, and
nothing that depends on a sample (a result line, another process's claim) is visible
before the sample is committed.

Each row also says who paid for it (``paid_by``: run id, query and node, process) and
what the call took (``calls``, ``attempts`` on the call's first sample), so a run
resumed after ``kill -9`` books the samples its killed process paid for exactly as an
uninterrupted run would, not as cache hits.

Several processes may share one cache: before paying for a request's samples a process
claims its key with an exclusive lock on one byte of ``PATH-claims`` (the byte is the key's
hash). Another process that needs the same key finds the byte locked, waits and then reads
the owner's rows instead of paying again. The kernel holds these locks, so a claim costs two
system calls (a claim row in SQLite would cost a write transaction per call, half the cache's
speed), and a crashed owner's claims vanish with it: nothing to expire.

Every SQLite failure (a damaged file, a foreign table, a full disk) becomes one
``CacheError`` naming the file and the remedy.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from llmnet.backends.base import Sample, request_key  # noqa: F401  (the key lives beside Request)
from llmnet.errors import CacheError

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    key TEXT NOT NULL,
    seed INTEGER NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    paid_by TEXT NOT NULL DEFAULT '',
    calls INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, seed)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sample_meta (
    key TEXT NOT NULL,
    seed INTEGER NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (key, seed)
) WITHOUT ROWID;
"""
# sample_meta: what a server said about a sample beside its text (reasoning, system_fingerprint,
# served model, prefix-cache hits), as JSON; only samples that carry some have a row.

V1_COLUMNS = ["key", "seed", "text", "prompt_tokens", "completion_tokens"]
V2_COLUMNS = V1_COLUMNS + ["paid_by", "calls", "attempts"]
CLAIM_BYTES = 1 << 30  # byte offsets of the claim file: keys hash into these
_SELECT_SQL = "SELECT seed, text, prompt_tokens, completion_tokens, paid_by, calls, attempts FROM samples"
_RANGE_SQL = f"{_SELECT_SQL} WHERE key = ? AND seed BETWEEN ? AND ?"
PaidRow = tuple[Sample, str, int, int]  # the sample, who paid, calls and attempts booked on it
_NO_LOCK = nullcontext()


class SampleCache:
    """Thread-safe enough for one event loop plus worker threads (a lock per connection)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not str(path) or self.path.is_dir():
            raise CacheError(f"cache '{path}' is a directory: give a file path such as {self.path / 'samples.sqlite'}")
        if self.path.exists() and not self.path.is_file():
            raise CacheError(f"cache '{path}' is not a regular file: give a file path such as .llmnet-cache/s.sqlite")
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # claimed byte -> keys of this process holding it
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._claims = os.open(f"{self.path}-claims", os.O_RDWR | os.O_CREAT, 0o644)
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"cannot use '{path}' as the sample cache: {getattr(exc, 'strerror', None) or exc}; "
                             f"pass another --cache") from None
        with self._guard():
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-16384")  # 16 MiB of pages (default 2): fewer reads from the OS
            self._migrate()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Any SQLite failure as one CacheError that names the file and the remedy."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: sqlite3.Error) -> CacheError:
        detail = str(exc)
        if "full" in detail:
            fix = "free disk space or pass --cache on another disk"
        elif "locked" in detail or "busy" in detail:
            fix = "another process holds it too long; try again or pass another --cache"
        else:
            fix = "delete it (its samples will be paid for again) or pass another --cache"
        return CacheError(f"sample cache {self.path} is unusable ({detail}): {fix}")

    def _migrate(self) -> None:
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "samples" in tables:
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(samples)")]
            if columns == V1_COLUMNS:  # a cache written before samples said who paid for them
                for column in ("paid_by TEXT NOT NULL DEFAULT ''", "calls INTEGER NOT NULL DEFAULT 0",
                               "attempts INTEGER NOT NULL DEFAULT 0"):
                    self._db.execute(f"ALTER TABLE samples ADD COLUMN {column}")
            elif columns != V2_COLUMNS:
                raise sqlite3.DatabaseError("its table 'samples' is not an llmnet sample table")
        self._db.executescript(SCHEMA)
        self._db.execute("SELECT COUNT(*) FROM samples WHERE key = ''").fetchone()  # reads a page: garbage fails here
        self._has_meta = self._db.execute("SELECT EXISTS (SELECT 1 FROM sample_meta)").fetchone()[0] == 1

    def get_many(self, key: str, seeds: Sequence[int]) -> dict[int, Sample]:
        return {seed: row[0] for seed, row in self.get_paid(key, seeds).items()}

    def get_paid(self, key: str, seeds: Sequence[int]) -> dict[int, PaidRow]:
        """Cached samples of ``key`` with who paid for them and the calls and attempts booked on them.

        On the executor's hot path (a call per query): no context managers, one cached statement."""
        if type(seeds) is range and seeds.step == 1:  # the usual case, a run of seeds: one range scan
            if not seeds:
                return {}
            lo, hi, run = seeds.start, seeds.stop - 1, True
        else:
            if not seeds:
                return {}
            lo, hi = min(seeds), max(seeds)
            run = hi - lo + 1 == len(seeds) == len(set(seeds))
        try:
            with self._lock:
                if run:
                    rows = self._db.execute(_RANGE_SQL, (key, lo, hi)).fetchall()
                else:
                    rows = self._db.execute(f"{_SELECT_SQL} WHERE key = ? AND seed IN ({','.join('?' * len(seeds))})",
                                            [key, *seeds]).fetchall()
                meta = self._meta(key, seeds) if rows and self._has_meta else None
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        if meta:
            return {seed: (Sample(text, p, c, **meta.get(seed, {})), by, calls, att)
                    for seed, text, p, c, by, calls, att in rows}
        return {seed: (Sample(text, p, c), by, calls, att) for seed, text, p, c, by, calls, att in rows}

    def seeds_of(self, key: str, limit: int) -> list[int]:
        """The seeds cached under ``key``, at most ``limit`` of them (the lowest), in order. A Ray worker's
        claim reads a key's rows with the claim, before it knows which seeds it needs (``execute.cluster``)."""
        with self._lock, self._guard():
            return [seed for (seed,) in self._db.execute(
                "SELECT seed FROM samples WHERE key = ? ORDER BY seed LIMIT ?", (key, limit))]

    def _meta(self, key: str, seeds: Sequence[int]) -> dict[int, dict]:
        rows = self._db.execute(f"SELECT seed, meta FROM sample_meta WHERE key = ? AND seed IN "
                                f"({','.join('?' * len(seeds))})", [key, *seeds]).fetchall()
        return {seed: json.loads(meta) for seed, meta in rows}

    def put_many(self, key: str, items: list[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
                 attempts: int = 0) -> None:
        """Store samples; the first carries the call's ``calls`` and ``attempts``."""
        rows = [(key, seed, s.text, s.prompt_tokens, s.completion_tokens, paid_by,
                 calls if i == 0 else 0, attempts if i == 0 else 0) for i, (seed, s) in enumerate(items)]
        self.put_rows(rows, [(key, seed, json.dumps(m)) for seed, s in items if (m := s.meta())])

    def claim(self, key: str) -> bool:
        """Claim ``key`` for this process (True), or False while another process holds it.

        POSIX locks belong to the process, so keys of this process that hash to the same byte
        share one lock, counted in ``_held`` and released with the last of them."""
        byte = int(key[:15], 16) % CLAIM_BYTES
        if self._held.get(byte):
            self._held[byte] += 1
            return True
        try:
            fcntl.lockf(self._claims, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        except (BlockingIOError, PermissionError):
            return False
        except OSError as exc:
            raise CacheError(f"sample cache {self.path}: cannot lock {self.path}-claims ({exc.strerror}); "
                             f"pass another --cache") from None
        self._held[byte] = 1
        return True

    def release(self, key: str) -> None:
        byte = int(key[:15], 16) % CLAIM_BYTES
        count = self._held.get(byte, 0)
        if count > 1:
            self._held[byte] = count - 1
            return
        self._held.pop(byte, None)
        if count:
            fcntl.lockf(self._claims, fcntl.LOCK_UN, 1, byte)

    def put_rows(self, rows: list[tuple], meta: list[tuple] = (), db: sqlite3.Connection | None = None) -> None:
        """Many (key, seed, text, prompt_tokens, completion_tokens, paid_by, calls, attempts) rows, and
        (key, seed, meta JSON) rows for samples a server said more about, in one transaction; on ``db``
        (a connection from ``connect_writer``, used by one thread) or else on this cache's own."""
        with (self._lock if db is None else _NO_LOCK), self._guard():
            db = self._db if db is None else db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                if meta:
                    db.executemany("INSERT OR IGNORE INTO sample_meta VALUES (?, ?, ?)", meta)
                    self._has_meta = True
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def connect_writer(self) -> sqlite3.Connection:
        """A second connection for a writer thread (``llmnet.execute.commits``): its commits never
        wait for this cache's lock, reads on the loop go on beside them (WAL), and it checkpoints
        only when asked (``checkpoint``), on that thread."""
        with self._guard():
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
        return db

    def checkpoint(self, db: sqlite3.Connection) -> None:
        """A passive WAL checkpoint on ``db``; one that fails is harmless (the next or closing catches up)."""
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass

    def __len__(self) -> int:
        with self._lock, self._guard():
            return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock, self._guard():
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            try:
                os.close(self._claims)  # drops every claim of this process on this file
            except OSError:
                pass
            try:
                self._db.close()
            except sqlite3.Error:
                pass
