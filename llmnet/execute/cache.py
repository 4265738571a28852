"""The per-sample cache: SQLite in WAL mode, one row per (request identity, sample seed).

Key = hash(model identity, prompt, system, api, sampling parameters without n and seed,
constrained choices, role context) and the sample's own seed (base seed + i). Asking
for K=10 after K=5 finds samples 0..4 and pays only for 5..9. Each backend response is
committed before it is used, so a killed run loses nothing it paid for.
"""

from __future__ import annotations

import sqlite3
import threading
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
    PRIMARY KEY (key, seed)
) WITHOUT ROWID;
"""


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
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"cannot use '{path}' as the sample cache: {exc} (is it a SQLite file?)") from None
        self._lock = threading.Lock()

    def get_many(self, key: str, seeds: list[int]) -> dict[int, Sample]:
        if not seeds:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT seed, text, prompt_tokens, completion_tokens FROM samples WHERE key = ? AND seed IN "
                f"({','.join('?' * len(seeds))})", [key, *seeds]).fetchall()
        return {seed: Sample(text, p, c) for seed, text, p, c in rows}

    def put_many(self, key: str, items: list[tuple[int, Sample]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?)",
                                 [(key, seed, s.text, s.prompt_tokens, s.completion_tokens) for seed, s in items])
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self._db.close()
