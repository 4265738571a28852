"""The per-sample cache: SQLite in WAL mode, one row per (request identity, sample seed).

Key = hash(model identity, prompt, system, api, sampling parameters without n and seed,
constrained choices, role context) and the sample's own seed (base seed + i). Asking
for K=10 after K=5 finds samples 0..4 and pays only for 5..9. Each backend response is
committed before it is used, so a killed run loses nothing it paid for.

Each row also says who paid for it (``paid_by``: run id, query and node, process) and
what the call took (``calls``, ``attempts`` on the call's first sample), so a run
resumed after ``kill -9`` books the samples its killed process paid for exactly as an
uninterrupted run would, not as cache hits.

Several processes may share one cache: before paying for a sample a process claims it
(``claims`` table, one row per sample, with the owner's pid, host and an expiry). Another
process that needs the same sample waits for the owner's row instead of paying again; a
claim whose owner died (same host, pid gone) or that expired is taken over.

Every SQLite failure (a damaged file, a foreign table, a full disk) becomes one
``CacheError`` naming the file and the remedy.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmnet.backends.base import Request, Sample
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
CREATE TABLE IF NOT EXISTS claims (
    key TEXT NOT NULL,
    seed INTEGER NOT NULL,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (key, seed)
) WITHOUT ROWID;
"""
V1_COLUMNS = ["key", "seed", "text", "prompt_tokens", "completion_tokens"]
V2_COLUMNS = V1_COLUMNS + ["paid_by", "calls", "attempts"]
CLAIM_TTL_S = 600.0
HOST = socket.gethostname()
PaidRow = tuple[Sample, str, int, int]  # the sample, who paid, calls and attempts booked on it


def request_key(identity: str, request: Request) -> str:
    """Everything that changes a sample's distribution, but not n or the seed."""
    payload = [identity, request.prompt, request.system, request.api, request.temperature, request.top_p,
               request.max_tokens, list(request.stop), list(request.choices or ()), request.role,
               request.candidate, request.n_candidates]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def _alive(pid: int, host: str) -> bool:
    """Whether a claim's owner may still be running (only a same-host pid can be checked)."""
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class SampleCache:
    """Thread-safe enough for one event loop plus worker threads (a lock per connection)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not str(path) or self.path.is_dir():
            raise CacheError(f"cache '{path}' is a directory: give a file path such as {self.path / 'samples.sqlite'}")
        if self.path.exists() and not self.path.is_file():
            raise CacheError(f"cache '{path}' is not a regular file: give a file path such as .llmnet-cache/s.sqlite")
        self._lock = threading.Lock()
        self._owners: set[str] = set()  # who claimed through this connection (their claims go at close)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"cannot use '{path}' as the sample cache: {getattr(exc, 'strerror', None) or exc}; "
                             f"pass another --cache") from None
        with self._guard():
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Any SQLite failure as one CacheError that names the file and the remedy."""
        try:
            yield
        except sqlite3.Error as exc:
            detail = str(exc)
            if "full" in detail:
                fix = "free disk space or pass --cache on another disk"
            elif "locked" in detail or "busy" in detail:
                fix = "another process holds it too long; try again or pass another --cache"
            else:
                fix = "delete it (its samples will be paid for again) or pass another --cache"
            raise CacheError(f"sample cache {self.path} is unusable ({detail}): {fix}") from None

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

    def get_many(self, key: str, seeds: list[int]) -> dict[int, Sample]:
        return {seed: row[0] for seed, row in self.get_paid(key, seeds).items()}

    def get_paid(self, key: str, seeds: list[int]) -> dict[int, PaidRow]:
        """Cached samples of ``key`` with who paid for them and the calls and attempts booked on them."""
        if not seeds:
            return {}
        with self._lock, self._guard():
            rows = self._db.execute(
                f"SELECT seed, text, prompt_tokens, completion_tokens, paid_by, calls, attempts FROM samples "
                f"WHERE key = ? AND seed IN ({','.join('?' * len(seeds))})", [key, *seeds]).fetchall()
        return {seed: (Sample(text, p, c), by, calls, att) for seed, text, p, c, by, calls, att in rows}

    def put_many(self, key: str, items: list[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
                 attempts: int = 0) -> None:
        """Store samples; the first carries the call's ``calls`` and ``attempts``. (Their claims stay
        until ``close``: a claim on a sample that exists is never waited for.)"""
        rows = [(key, seed, s.text, s.prompt_tokens, s.completion_tokens, paid_by,
                 calls if i == 0 else 0, attempts if i == 0 else 0) for i, (seed, s) in enumerate(items)]
        with self._lock, self._guard():
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def claim(self, key: str, seeds: list[int], owner: str) -> tuple[dict[int, PaidRow], list[int], list[int]]:
        """For samples not in the cache: which ones are already there now, which ones this owner
        may pay for (claimed), and which ones another live owner is paying for (wait for them)."""
        marks = ",".join("?" * len(seeds))
        now = time.time()
        self._owners.add(owner)
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(  # one statement: the samples there now, and the claims held
                    f"SELECT 0, seed, text, prompt_tokens, completion_tokens, paid_by, calls, attempts, 0.0 "
                    f"FROM samples WHERE key = ? AND seed IN ({marks}) UNION ALL "
                    f"SELECT 1, seed, owner, pid, 0, host, 0, 0, expires FROM claims WHERE key = ? AND "
                    f"seed IN ({marks})", [key, *seeds, key, *seeds]).fetchall()
                there = {seed: (Sample(t, p, c), by, calls, att)
                         for claim, seed, t, p, c, by, calls, att, _ in rows if not claim}
                theirs = {seed for claim, seed, who, pid, _, host, _, _, expires in rows
                          if claim and who != owner and expires > now and _alive(pid, host)}
                mine = [s for s in seeds if s not in there and s not in theirs]
                if mine:
                    self._db.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                                         [(key, s, owner, os.getpid(), HOST, now + CLAIM_TTL_S) for s in mine])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return there, mine, sorted(theirs - set(there))

    def release(self, key: str, seeds: list[int], owner: str) -> None:
        """Give up claims (a failed call), so another process may pay for those samples."""
        if not seeds:
            return
        with self._lock, self._guard():
            self._db.executemany("DELETE FROM claims WHERE key = ? AND seed = ? AND owner = ?",
                                 [(key, s, owner) for s in seeds])

    def __len__(self) -> int:
        with self._lock, self._guard():
            return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock, self._guard():
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            try:
                self._db.executemany("DELETE FROM claims WHERE owner = ?", [(o,) for o in self._owners])
            except sqlite3.Error:
                pass
            try:
                self._db.close()
            except sqlite3.Error:
                pass
