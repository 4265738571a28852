"""The per-sample cache: SQLite in WAL mode, one row per (request identity, sample seed).

Key = hash(model identity, prompt, system, api, sampling parameters without n and seed,
constrained choices, role context) and the sample's own seed (base seed + i). Asking
for K=10 after K=5 finds samples 0..4 and pays only for 5..9. Each backend response is
committed before it is used, so a killed run loses nothing it paid for.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
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


_KEY_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps(..., ensure_ascii=False), without a new encoder a call


def request_key(identity: str, request: Request) -> str:
    """Everything that changes a sample's distribution, but not n or the seed."""
    payload = [identity, request.prompt, request.system, request.api, request.temperature, request.top_p,
               request.max_tokens, list(request.stop), list(request.choices or ()), request.role,
               request.candidate, request.n_candidates]
    return hashlib.sha256(_KEY_JSON.encode(payload).encode()).hexdigest()


class SampleCache:
    """Thread-safe enough for one event loop plus worker threads (a lock per connection)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not str(path) or self.path.is_dir():
            raise CacheError(f"cache '{path}' is a directory: give a file path such as {self.path / 'samples.sqlite'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA cache_size=-16384")  # 16 MiB of pages (default 2): fewer reads from the OS
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"cannot use '{path}' as the sample cache: {exc} (is it a SQLite file?)") from None
        self._lock = threading.Lock()
        self._has_meta = self._db.execute("SELECT EXISTS (SELECT 1 FROM sample_meta)").fetchone()[0] == 1

    def get_many(self, key: str, seeds: list[int]) -> dict[int, Sample]:
        if not seeds:
            return {}
        lo, hi = min(seeds), max(seeds)
        with self._lock:
            if hi - lo + 1 == len(seeds):  # the usual case, a run of seeds: one range scan, one cached statement
                rows = self._db.execute("SELECT seed, text, prompt_tokens, completion_tokens FROM samples "
                                        "WHERE key = ? AND seed BETWEEN ? AND ?", (key, lo, hi)).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT seed, text, prompt_tokens, completion_tokens FROM samples WHERE key = ? AND seed IN "
                    f"({','.join('?' * len(seeds))})", [key, *seeds]).fetchall()
            meta = self._meta(key, seeds) if self._has_meta else {}
        return {seed: Sample(text, p, c, **meta.get(seed, {})) for seed, text, p, c in rows}

    def _meta(self, key: str, seeds: list[int]) -> dict[int, dict]:
        rows = self._db.execute(f"SELECT seed, meta FROM sample_meta WHERE key = ? AND seed IN "
                                f"({','.join('?' * len(seeds))})", [key, *seeds]).fetchall()
        return {seed: json.loads(meta) for seed, meta in rows}

    def put_many(self, key: str, items: list[tuple[int, Sample]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?)",
                                 [(key, seed, s.text, s.prompt_tokens, s.completion_tokens) for seed, s in items])
            meta = [(key, seed, json.dumps(m)) for seed, s in items if (m := s.meta())]
            if meta:
                self._db.executemany("INSERT OR IGNORE INTO sample_meta VALUES (?, ?, ?)", meta)
                self._has_meta = True
            self._db.execute("COMMIT")

    def put_rows(self, rows: list[tuple], meta: list[tuple] = ()) -> None:
        """Many (key, seed, text, prompt_tokens, completion_tokens) rows, and (key, seed, meta JSON) rows for
        samples a server said more about, in one transaction."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?)", rows)
                if meta:
                    self._db.executemany("INSERT OR IGNORE INTO sample_meta VALUES (?, ?, ?)", meta)
                    self._has_meta = True
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise CacheError(f"cannot write the sample cache '{self.path}': {exc}") from None

    def stop_autocheckpoint(self) -> None:
        """Commits no longer checkpoint (and fsync) on this connection: the caller checkpoints elsewhere."""
        with self._lock:
            self._db.execute("PRAGMA wal_autocheckpoint=0")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self._db.close()
