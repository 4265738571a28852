"""The per-sample cache: SQLite in WAL mode, one row per model call, addressed by (request identity, sample seed).

Key = hash(model identity, prompt, system, api, sampling parameters without n and seed,
constrained choices, role context) and the sample's own seed (base seed + i). Asking
for K=10 after K=5 finds samples 0..4 and pays only for 5..9. The executor writes fresh
samples through write-behind group commits on a writer thread (``llmnet.execute.commits``):
a killed run loses at most the batch not yet committed, never corrupts the file, and
nothing that depends on a sample (a result line, another process's claim) is visible
before the sample is committed.

A row holds one call's samples (seeds ``seed`` .. ``seed + n - 1``) as a JSON array: one
B-tree insert per call rather than per sample makes a write about six times cheaper, and a
read is one short range scan. Rows are appended to a rowid table in write order, under a
unique index on (key, seed): keys are hashes, so a commit's keys land all over the key
order, and only the index's small entries are written there rather than whole rows (about
35% less CPU per row at 70k rows than the table keyed by (key, seed) that files written
before kept; those are used as they are). Older files (a table row per sample) are
converted in place, in one transaction, the first time they are opened. The view
``samples`` shows one row per sample for anyone who queries the file.

Each row also says who paid for it (``paid_by``: run id, query and node, process) and
what the call took (``calls``, ``attempts``, booked on the call's first sample), so a run
resumed after ``kill -9`` books the samples its killed process paid for exactly as an
uninterrupted run would, not as cache hits.

Several processes may share one cache: before paying for a request's samples a process
claims its key (``llmnet.execute.claims``: a POSIX lock on one byte of ``PATH-claims``, only
counted while the process is alone on the file). Another process that needs the same key
waits and then reads the owner's rows instead of paying again. The kernel holds these locks,
so a crashed owner's claims vanish with it (a claim row in SQLite would cost a write
transaction per call, half the cache's speed).

Every SQLite failure (a damaged file, a foreign table, a full disk) becomes one
``CacheError`` naming the file and the remedy.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path

from llmnet.backends.base import Sample, request_key  # noqa: F401  (the key lives beside Request)
from llmnet.errors import CacheError
from llmnet.execute.claims import CLAIMED, CLAIMED_ALONE, CLAIMED_NEW, key_byte, open_claims  # noqa: F401

CALLS_TABLE = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT NOT NULL,
    seed INTEGER NOT NULL,
    n INTEGER NOT NULL,
    samples TEXT NOT NULL,
    paid_by TEXT NOT NULL DEFAULT '',
    calls INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (key, seed)
)"""
SAMPLES_VIEW = """
CREATE VIEW IF NOT EXISTS samples AS
    SELECT c.key AS key, c.seed + j.key AS seed, json_extract(j.value, '$[0]') AS text,
           json_extract(j.value, '$[1]') AS prompt_tokens, json_extract(j.value, '$[2]') AS completion_tokens,
           c.paid_by AS paid_by, CASE WHEN j.key = 0 THEN c.calls ELSE 0 END AS calls,
           CASE WHEN j.key = 0 THEN c.attempts ELSE 0 END AS attempts,
           json_extract(j.value, '$[3]') AS meta
    FROM calls AS c, json_each(c.samples) AS j"""
SCHEMA = f"{CALLS_TABLE};{SAMPLES_VIEW};"
# calls: one row per model call, its samples (seeds seed .. seed + n - 1) packed as a JSON array of
# [text, prompt_tokens, completion_tokens] or, when a server said more about a sample (reasoning,
# system_fingerprint, served model, prefix-cache hits), [text, prompt_tokens, completion_tokens, {...}].
# ``samples`` is a read-only view with one row per sample, for people and tools that query the file.

CALL_COLUMNS = ["key", "seed", "n", "samples", "paid_by", "calls", "attempts"]
V1_COLUMNS = ["key", "seed", "text", "prompt_tokens", "completion_tokens"]  # older files: a table row per sample
V2_COLUMNS = V1_COLUMNS + ["paid_by", "calls", "attempts"]
_RANGE_SQL = "SELECT seed, n, samples, paid_by, calls, attempts FROM calls WHERE key = ? AND seed <= ? ORDER BY seed"
KNOWN_KEYS = 8192  # keys whose rows a process alone on the cache remembers from lookups (then afresh)
DECODED_ROWS = 4096  # rows a cache remembers decoded (``unpack``), then it starts afresh
READ_KEYS = 256  # keys a batched read's statement asks for
PAGE_BYTES = 16384  # a new file's page size (SQLite's default 4,096): a commit's keys land all over the index,
# and fewer, larger pages cost the writer less: 41k rows in commits of 4,096, 113 -> 83 ms; 100k, 380 -> 272 ms
INSERT_ROWS = 128  # rows a statement (7 parameters each: under the 999 of older SQLite builds)
log = logging.getLogger(__name__)
PaidRow = tuple[Sample, str, int, int]  # the sample, who paid, calls and attempts booked on it
_NO_LOCK = nullcontext()
_KEY = itemgetter(0)
_PACK = json.JSONEncoder(separators=(",", ":")).encode  # ASCII JSON: any text, lone surrogates included, round-trips
_ESCAPE = json.encoder.encode_basestring_ascii  # what _PACK does to a str


@lru_cache(maxsize=16)
def _keys_sql(keys: int) -> str:
    return (f"SELECT key, seed, n, samples, paid_by, calls, attempts FROM calls WHERE key IN "
            f"({', '.join(['?'] * keys)}) ORDER BY key, seed")


@lru_cache(maxsize=INSERT_ROWS)
def _insert_sql(rows: int) -> str:
    """One INSERT of ``rows`` rows. executemany runs the statement once a row, and Python's sqlite3
    lets go of the GIL around each run: with the event loop busy on the other thread, the writer then
    waits for the GIL once a row. Measured on bench_executor's 10k-query cached run: about 25% less
    CPU with a statement per 128 rows than with executemany."""
    return "INSERT OR IGNORE INTO calls VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


def pack(items: Sequence[tuple[int, Sample]]) -> str:
    """The samples of (seed, sample) items as the JSON array stored in ``calls.samples``."""
    return pack_samples([s for _, s in items])


def pack_samples(samples: Sequence[Sample]) -> str:
    """``samples`` as the JSON array stored in ``calls.samples``: built from escaped texts for plain
    samples (half the time of the encoder, which sets itself up per call; byte for byte the same,
    ``tests/execute/test_cache_trust.py``), else by the encoder."""
    packed = _pack_plain(samples)
    return _pack(samples) if packed is None else packed


def _pack_plain(samples: Sequence[Sample]) -> str | None:
    """``pack_samples`` of plain samples (a str text, int token counts, no server remarks), which
    ``decode`` turns back into samples with the same values of the same types; None for any other."""
    parts = []
    for s in samples:
        p, c = s.prompt_tokens, s.completion_tokens
        if (type(p) is not int or type(c) is not int or type(s.text) is not str or s.reasoning is not None
                or s.cached_tokens != 0 or type(s.cached_tokens) is not int or s.fingerprint is not None
                or s.served_model is not None):
            return None
        parts.append(f"[{_ESCAPE(s.text)},{p},{c}]")
    return "[" + ",".join(parts) + "]"


def _pack(samples: Sequence[Sample]) -> str:
    return _PACK([[s.text, s.prompt_tokens, s.completion_tokens, m] if (m := s.meta())
                  else [s.text, s.prompt_tokens, s.completion_tokens] for s in samples])


def call_rows(key: str, items: Sequence[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
              attempts: int = 0) -> list[tuple]:
    """``calls`` rows for (seed, sample) items: one per run of consecutive seeds (one for a call's
    samples); the first carries the call's ``calls`` and ``attempts``."""
    rows, start, n = [], 0, len(items)
    for i in range(1, n + 1):
        if i == n or items[i][0] != items[i - 1][0] + 1:
            run = items[start:i]
            booked = (calls, attempts) if not rows else (0, 0)
            rows.append((key, run[0][0], i - start, pack(run), paid_by, *booked))
            start = i
    return rows


def read_paid(db: sqlite3.Connection, key: str, lo: int, hi: int, wanted=None) -> dict[int, PaidRow]:
    """The stored samples of ``key`` with seeds in [lo, hi] (and in ``wanted`` when given), with who
    paid and the calls and attempts booked on each (a call's on its first sample), from the ``calls``
    table of ``db``. The first row that holds a seed wins."""
    return unpack(db.execute(_RANGE_SQL, (key, hi)).fetchall(), lo, hi, wanted)


def decode(packed: str, memo: dict | None = None) -> tuple[Sample, ...]:
    """The samples of a ``calls.samples`` array; ``memo``: arrays already decoded (samples are
    immutable), so a row read again costs no JSON and no new samples."""
    samples = memo.get(packed) if memo is not None else None
    if samples is None:
        samples = tuple(Sample(item[0], item[1], item[2], **item[3]) if len(item) > 3 else Sample(*item)
                        for item in json.loads(packed))
        if memo is not None:
            _remember_decoded(memo, packed, samples)
    return samples


def _remember_decoded(memo: dict, packed: str, samples: tuple[Sample, ...]) -> None:
    if len(memo) >= DECODED_ROWS:  # then afresh
        memo.clear()
    memo[packed] = samples


def unpack(rows, lo: int, hi: int, wanted=None, memo: dict | None = None) -> dict[int, PaidRow]:
    """``calls`` rows (seed, n, samples, paid_by, calls, attempts) of one key, in seed order, as
    ``read_paid`` gives them. ``memo``: as ``decode``'s."""
    out: dict[int, PaidRow] = {}
    for seed, n, packed, by, calls, attempts in rows:
        if seed + n <= lo or seed > hi:
            continue
        for j, sample in enumerate(decode(packed, memo)):
            s = seed + j
            if lo <= s <= hi and s not in out and (wanted is None or s in wanted):
                out[s] = (sample, by, calls, attempts) if j == 0 else (sample, by, 0, 0)
    return out


class SampleCache:
    """Thread-safe enough for one event loop plus worker threads (a lock per connection)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not str(path) or self.path.is_dir():
            raise CacheError(f"cache '{path}' is a directory: give a file path such as {self.path / 'samples.sqlite'}")
        if self.path.exists() and not self.path.is_file():
            raise CacheError(f"cache '{path}' is not a regular file: give a file path such as .llmnet-cache/s.sqlite")
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # claimed byte -> keys of this cache holding it
        self._decoded: dict[str, tuple[Sample, ...]] = {}  # packed samples -> decoded (``unpack``)
        self._claims = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the real file's claims (a symlink to it shares them); opened before SQLite: waits while another
            # process is alone on the file
            self._claims = open_claims(f"{os.path.realpath(self.path)}-claims")
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            if self._claims is not None:
                self._claims.close()
            raise CacheError(f"cannot use '{path}' as the sample cache: {getattr(exc, 'strerror', None) or exc}; "
                             f"pass another --cache") from None
        try:
            with self._guard():
                self._db.execute("PRAGMA busy_timeout=10000")
                self._db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # a new file's (before WAL: then it is fixed)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA cache_size=-16384")  # 16 MiB of pages (default 2): fewer reads from the OS
                self._migrate()
                self._claims.set_fresh(self._db.execute("SELECT 1 FROM calls LIMIT 1").fetchone() is None)
        except CacheError:
            self.close()
            raise

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
        kinds = dict(self._db.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"))
        if kinds.get("samples") == "table":  # written by an older llmnet: a table row per sample
            self._convert()
        elif "calls" in kinds and [row[1] for row in self._db.execute("PRAGMA table_info(calls)")] != CALL_COLUMNS:
            raise sqlite3.DatabaseError("its table 'calls' is not an llmnet call table")
        if kinds.get("calls") != "table" or kinds.get("samples") != "view":  # a new file (or one converted just now)
            self._db.executescript(SCHEMA)
        self._db.execute("SELECT COUNT(*) FROM calls WHERE key = ''").fetchone()  # reads a page: garbage fails here

    def _convert(self) -> None:
        """Rewrite an older file's ``samples`` table (a row per sample; ``sample_meta`` beside it) as
        ``calls`` rows of one sample each, in one transaction: every sample, who paid, the calls and
        attempts booked and the server's remarks are kept; a second process opening it meanwhile waits."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"))
            if kinds.get("samples") == "table":  # not converted by another process while this one waited
                columns = [row[1] for row in db.execute("PRAGMA table_info(samples)")]
                if columns == V1_COLUMNS:  # from before samples said who paid for them
                    paid = "'', 0, 0"
                elif columns == V2_COLUMNS:
                    paid = "s.paid_by, s.calls, s.attempts"
                else:
                    raise sqlite3.DatabaseError("its table 'samples' is not an llmnet sample table")
                item = "json_array(s.text, s.prompt_tokens, s.completion_tokens"
                if "sample_meta" in kinds:
                    packed = (f"CASE WHEN m.meta IS NULL THEN json_array({item})) "
                              f"ELSE json_array({item}, json(m.meta))) END")
                    source = "samples AS s LEFT JOIN sample_meta AS m ON m.key = s.key AND m.seed = s.seed"
                else:
                    packed, source = f"json_array({item}))", "samples AS s"
                db.execute(CALLS_TABLE)  # (not executescript: it would commit)
                db.execute(f"INSERT OR IGNORE INTO calls SELECT s.key, s.seed, 1, {packed}, {paid} FROM {source}")
                db.execute("DROP TABLE samples")
                db.execute("DROP TABLE IF EXISTS sample_meta")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get_many(self, key: str, seeds: Sequence[int]) -> dict[int, Sample]:
        return {seed: row[0] for seed, row in self.get_paid(key, seeds).items()}

    def get_paid(self, key: str, seeds: Sequence[int]) -> dict[int, PaidRow]:
        """Cached samples of ``key`` with who paid for them and the calls and attempts booked on them.

        On the executor's hot path (a call per query): one cached statement, one JSON array per call."""
        if not seeds:
            return {}
        if type(seeds) is range and seeds.step == 1:  # the usual case, a run of seeds: one range scan
            return self._read(key, seeds.start, seeds.stop - 1)
        return self._read(key, min(seeds), max(seeds), set(seeds))

    def get_paid_many(self, wants: Sequence[tuple[str, Sequence[int]]]) -> list[dict[int, PaidRow]]:
        """``get_paid`` for many (key, seeds) at once: one statement per ``READ_KEYS`` keys. The executor
        reads a turn of its event loop's lookups this way (``GroupCommit.lookup``): a statement per
        lookup costs several times more in a busy process than in a loop of reads alone."""
        keys = list(dict.fromkeys(key for key, _ in wants))
        found: dict[str, list[tuple]] = {}
        try:
            with self._lock:
                for i in range(0, len(keys), READ_KEYS):
                    chunk = keys[i:i + READ_KEYS]
                    size = 1 << (len(chunk) - 1).bit_length()  # a few statement sizes, each prepared once
                    chunk += chunk[-1:] * (size - len(chunk))
                    for key, *row in self._db.execute(_keys_sql(size), chunk).fetchall():
                        found.setdefault(key, []).append(row)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        out = []
        for key, seeds in wants:
            rows = found.get(key)
            if not rows or not seeds:
                out.append({})
                continue
            try:
                if type(seeds) is range and seeds.step == 1:
                    out.append(unpack(rows, seeds.start, seeds.stop - 1, memo=self._decoded))
                else:
                    out.append(unpack(rows, min(seeds), max(seeds), set(seeds), self._decoded))
            except (ValueError, TypeError, IndexError, KeyError):
                raise self._unusable(sqlite3.DatabaseError(f"a damaged row for key {key[:12]}")) from None
        return out

    def pack(self, samples: Sequence[Sample]) -> str:
        """``pack_samples``; plain samples are remembered as their own decoding (``decode`` would make
        the same), so a row put moments ago and asked for again costs no JSON and no new samples."""
        packed = _pack_plain(samples)
        if packed is None:
            return _pack(samples)
        _remember_decoded(self._decoded, packed, tuple(samples))
        return packed

    def decode(self, packed: str) -> tuple[Sample, ...]:
        """``decode`` with this cache's decoded rows."""
        return decode(packed, self._decoded)

    def unpack(self, rows: list[tuple], lo: int = -(1 << 62), hi: int = 1 << 62) -> dict[int, PaidRow]:
        """``unpack`` with this cache's decoded rows."""
        return unpack(rows, lo, hi, memo=self._decoded)

    def get_all(self, key: str, limit: int) -> dict[int, PaidRow] | None:
        """Every cached sample of ``key`` as ``get_paid`` gives them, or None when there are more than
        ``limit``. A Ray worker's claim brings them, before the worker knows which seeds it needs
        (``execute.cluster``)."""
        rows = self._read(key, -(1 << 62), 1 << 62)
        return rows if len(rows) <= limit else None

    def _read(self, key: str, lo: int, hi: int, wanted: set[int] | None = None) -> dict[int, PaidRow]:
        try:
            with self._lock:
                return read_paid(self._db, key, lo, hi, wanted)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        except (ValueError, TypeError, IndexError, KeyError):  # a row whose samples are not what llmnet wrote
            raise self._unusable(sqlite3.DatabaseError(f"a damaged row for key {key[:12]}")) from None

    def put_many(self, key: str, items: list[tuple[int, Sample]], paid_by: str = "", calls: int = 0,
                 attempts: int = 0) -> None:
        """Store (seed, sample) items; the first carries the call's ``calls`` and ``attempts``."""
        self.put_rows(call_rows(key, items, paid_by, calls, attempts))

    def claim(self, key: str) -> int:
        """Claim ``key`` for this process, or 0 while another process holds it. While the process is
        alone on the file (``llmnet.execute.claims``) a claim is ``CLAIMED_NEW`` when the file holds
        no row of ``key`` (nothing to read), else ``CLAIMED_ALONE``; otherwise ``CLAIMED``."""
        return self._claims.claim(key_byte(key), self._held)

    def mark_written(self, key: str) -> None:
        """Before a row of ``key`` is written: the file may hold ``key`` from now on (``claim``)."""
        self._claims.mark_written(key_byte(key), key)

    def remember(self, key: str, seeds: range, rows: dict[int, PaidRow]) -> None:
        """(Only while alone.) ``rows`` are all the file holds of ``key`` in ``seeds``, until this process
        writes more of it (``mark_written``): the process's caches on this file answer from them
        (``known_rows``)."""
        known = self._claims.known
        if len(known) >= KNOWN_KEYS:
            known.clear()
        known[key] = (seeds.start, seeds.stop - 1, rows)

    def known_rows(self, key: str, seeds: range) -> dict[int, PaidRow] | None:
        """The file's rows of ``key`` in ``seeds`` as remembered (``remember``) when they cover ``seeds``;
        else None. All the file holds there for a key claimed while alone (``CLAIMED_ALONE``); for any
        other caller, rows the file holds (a row never changes once written)."""
        known = self._claims.known.get(key)
        if known is None or seeds.start < known[0] or seeds.stop - 1 > known[1]:
            return None
        rows = known[2]
        if known[0] == seeds.start and known[1] == seeds.stop - 1:  # the usual case: the same range again
            return rows  # (read, never changed, by the caller)
        return {s: rows[s] for s in seeds if s in rows}

    @property
    def fresh(self) -> bool:
        """This process is alone on a file that had no rows when it became alone: only this process
        wrote what the file holds (``llmnet.execute.claims``). False once closed."""
        claims = self._claims
        return claims is not None and claims.written is not None

    @property
    def alone(self) -> bool:
        """This process is alone on the file (``llmnet.execute.claims``)."""
        return self._claims.alone

    def release(self, key: str) -> None:
        self._claims.release(key_byte(key), 1, self._held)

    def release_all(self, keys: Sequence[str]) -> None:
        """``release`` of each of ``keys``, in one step (a commit's keys)."""
        self._claims.release_all([key_byte(key) for key in keys], self._held)

    def put_rows(self, rows: list[tuple], db: sqlite3.Connection | None = None) -> bool:
        """``calls`` rows (from ``call_rows``) in one transaction; on ``db`` (a connection from
        ``connect_writer``, used by one thread) or else on this cache's own. False when the file
        already held some of them (it keeps those, the first written)."""
        if db is None:  # (a writer thread's rows were marked when they were put: ``mark_written``)
            for row in rows:
                self.mark_written(row[0])
        rows = sorted(rows, key=_KEY)  # in key order, each page once (on its own, 100k random keys in commits of
        # 8,192: 9.7 -> 6.2 us a row; a key's rows share its pages, and comparing keys alone, not (key, seed) pairs,
        # takes about 10% off a commit's time); stable: of two rows for one seed the first put is still the one kept
        with (self._lock if db is None else _NO_LOCK), self._guard():
            db = self._db if db is None else db
            db.execute("BEGIN")
            try:
                before = db.total_changes
                for i in range(0, len(rows), INSERT_ROWS):  # many rows a statement: see INSERT_ROWS
                    chunk = rows[i:i + INSERT_ROWS]
                    db.execute(_insert_sql(len(chunk)), list(chain.from_iterable(chunk)))
                kept = db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if kept < len(rows):
            log.warning("sample cache %s already held %d of %d call rows written now (put there meanwhile by "
                        "something that does not claim keys, e.g. a hand-written row); the file keeps the first",
                        self.path, len(rows) - kept, len(rows))
            return False
        return True

    def connect_writer(self) -> sqlite3.Connection:
        """A second connection for a writer thread (``llmnet.execute.commits``): its commits never
        wait for this cache's lock, reads on the loop go on beside them (WAL), and it checkpoints
        only when asked (``checkpoint``), on that thread."""
        with self._guard():
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute("PRAGMA cache_size=-32768")  # 32 MiB: keys are random, so a commit changes pages all over
        return db

    def checkpoint(self, db: sqlite3.Connection) -> None:
        """A passive WAL checkpoint on ``db``; one that fails is harmless (the next or closing catches up)."""
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass

    def __len__(self) -> int:
        with self._lock, self._guard():
            return self._db.execute("SELECT COALESCE(SUM(n), 0) FROM calls").fetchone()[0]

    def integrity_ok(self) -> bool:
        with self._lock, self._guard():
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self, wait: bool = True) -> None:
        """Drop this cache's claims and close the file. Closing the last connection makes SQLite
        copy the WAL into the file and sync it (about 15 ms); ``wait=False`` leaves that to a thread,
        so a finished run returns at once. Everything is committed before either: the thread only
        tidies the file (a process killed meanwhile leaves a WAL that the next open replays), and
        Python waits for it before exiting."""
        claims, self._claims = self._claims, None
        if claims is not None:  # this cache's claims go; the file closes with the process's last cache on it
            for byte, count in list(self._held.items()):
                claims.release(byte, count, self._held)  # (the counts kept as claim keeps them: under its lock)
            claims.close()
        if wait:
            self._close_db()
        else:
            threading.Thread(target=self._close_db, name="llmnet-cache-close").start()

    def _close_db(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
