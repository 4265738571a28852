"""Claims on a sample cache's keys across processes, free while a process is alone on the file.

Before paying for a request's samples a process claims its key: an exclusive POSIX lock on one
byte of ``PATH-claims`` (the byte is the key's hash). Another process that needs the same key
finds the byte locked, waits and then reads the owner's rows instead of paying again. The kernel
holds these locks, so a crashed owner's claims vanish with it: nothing to expire.

A lock costs two system calls, and the kernel walks the process's list of locks on the file for
each, so with hundreds of keys in flight a claim costs more than the read it guards. Most runs
are alone on their cache, so claims are only counted while a process is alone, and become locks
the moment another process opens the file:

- every process with the file open holds a shared lock on byte ``PRESENCE``;
- a process that finds nobody else there when it opens the file is *alone*: it also holds an
  exclusive lock on byte ``ALONE``, and counts its claims in memory;
- a process that opens the file waits while ``ALONE`` is locked, before it claims, reads or
  writes anything;
- the alone process looks for other holders of ``PRESENCE`` every ``ALONE_POLL_S`` (a thread,
  so an idle or busy event loop does not matter). When it sees one it locks the bytes of the
  claims it holds (nobody else can hold them: everyone else is waiting), one at a time so its own
  claims go on meanwhile, then gives up ``ALONE``; the newcomer goes on and finds those keys
  claimed. A claims file deleted or replaced under it is said, and the process reads every key
  from then on (processes on the two files no longer see each other's claims).

While alone, a process also knows the file's rows of keys it looked up (``known``, dropped
when it writes more of a key), and which keys the file cannot hold: if the file had no rows when
the process became alone (``fresh``), only keys this process wrote can be there (``written``, a
table of key hashes marked before each write), so a key claimed while alone and not marked needs
no read. Rows that something other than llmnet writes into a cache while an llmnet process is
alone on it are not seen by that process (llmnet's own writers always open the cache first).

POSIX locks belong to the process, not to a file descriptor, and closing any descriptor of the
file drops all of them. So a process opens the claims file once (``open_claims``): its caches on
one file share it, and it is closed with the last of them (the claims file of a cache opened
through a symlink is the real file's). Keys of this process that hash to the same byte share one
lock, counted in ``held`` and released with the last of them. A forked child holds none of its
parent's locks: a cache it inherited refuses to claim, and it opens the cache again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import zlib

from llmnet.errors import CacheError

log = logging.getLogger(__name__)

CLAIM_BYTES = 1 << 30  # byte offsets keys hash into
PRESENCE = CLAIM_BYTES  # every process with the file open holds a shared lock here
ALONE = CLAIM_BYTES + 1  # the process alone on the file holds an exclusive lock here
# what ``claim`` grants: a claim; one taken while alone (nothing else writes the file meanwhile); one taken
# while alone on a key the file holds no row of (nothing to read)
CLAIMED, CLAIMED_ALONE, CLAIMED_NEW = 1, 2, 3
WRITTEN_SLOTS = 1 << 21  # slots of the table of key hashes written while alone (a byte each: 2 MiB)
ALONE_POLL_S = 0.02  # how often the alone process looks for a newcomer (who waits that long at most)
JOIN_WARN_S = 5.0  # a newcomer says it is waiting after this long

_FILES: dict[str, "ClaimFile"] = {}  # claims path -> this process's open claims file
_FILES_LOCK = threading.Lock()  # guards _FILES, users and _ALONE (held briefly)
_OPENING = threading.Lock()  # one open or last close at a time: never two descriptors of one file
_ALONE: set["ClaimFile"] = set()  # open claims files this process is alone on (the watcher's list)
_watcher: threading.Thread | None = None


def key_byte(key: str) -> int:
    """The claim byte of ``key`` (a request key is hex: its first 60 bits)."""
    try:
        return int(key[:15], 16) % CLAIM_BYTES
    except ValueError:  # a key that is not a request key (written by hand or by a test)
        return zlib.crc32(key.encode()) % CLAIM_BYTES


def open_claims(path: str) -> "ClaimFile":
    """This process's claims file at ``path``, opened on first use and shared by its caches."""
    real = os.path.realpath(path)
    with _OPENING:
        with _FILES_LOCK:
            claims = _FILES.get(real)
            if claims is not None and claims.same_file(real):
                claims.users += 1
                return claims
        claims = ClaimFile(real)  # may wait for a process alone on the file (its watcher needs only _FILES_LOCK)
        with _FILES_LOCK:
            _FILES[real] = claims
        return claims


class ClaimFile:
    """The claims of one process on one cache file (see the module's docstring)."""

    def __init__(self, path: str):
        self.path = path
        self.users = 1
        self.held: dict[int, int] = {}  # locked (or, while alone, counted) byte -> keys of this process on it
        self.alone = False
        self.fresh: bool | None = None  # the file had no rows when this process became alone (set by its cache)
        self.written: bytearray | None = None  # while fresh: slots of the key hashes this process wrote
        self.known: dict[str, tuple] = {}  # while alone: key -> (lo, hi, the file's rows of it in lo..hi)
        self.closed = False
        self.forked = False  # this object came with a fork: the child holds none of its locks
        self.lock = threading.Lock()  # claim, release and stepping down exclude each other
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheError(f"cannot use '{path}' for the sample cache's claims ({exc.strerror}); "
                             f"pass another --cache") from None
        self._ino = os.fstat(self.fd).st_ino
        try:
            self._join()
        except OSError as exc:
            os.close(self.fd)
            raise CacheError(f"cannot lock {path} ({exc.strerror}); pass another --cache") from None

    def same_file(self, path: str) -> bool:
        """Still the file at ``path`` (not one deleted and made anew since)."""
        try:
            return os.stat(path).st_ino == self._ino
        except OSError:
            return False

    def _try(self, how: int, byte: int) -> bool:
        try:
            fcntl.lockf(self.fd, how | fcntl.LOCK_NB, 1, byte)
            return True
        except (BlockingIOError, PermissionError):
            return False

    def _join(self) -> None:
        """Announce this process, wait while another is alone on the file, then be alone if nobody else is here."""
        fcntl.lockf(self.fd, fcntl.LOCK_SH, 1, PRESENCE)  # held exclusively only for a moment (``_nobody_else``)
        start, warned = time.monotonic(), False
        while not self._try(fcntl.LOCK_SH, ALONE):  # the alone process steps down within ALONE_POLL_S
            if not warned and time.monotonic() - start > JOIN_WARN_S:
                log.warning("still waiting for the process alone on %s to make room (it locks each key it "
                            "holds, which takes a while with thousands; or is it stopped?)", self.path)
                warned = True
            time.sleep(ALONE_POLL_S / 4)
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, ALONE)
        if self._try(fcntl.LOCK_EX, ALONE):
            if self._nobody_else():
                self.alone = True
                _watch(self)
            else:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, ALONE)

    def _nobody_else(self) -> bool:
        """No other process holds ``PRESENCE`` (ours becomes exclusive for a moment, then shared again)."""
        if not self._try(fcntl.LOCK_EX, PRESENCE):
            return False
        fcntl.lockf(self.fd, fcntl.LOCK_SH, 1, PRESENCE)
        return True

    def step_down_if_joined(self) -> bool:
        """(The watcher.) When another process has opened the file: lock every claimed byte, then give
        up ``ALONE``. True once this process is no longer alone.

        The bytes are locked one at a time, each under ``lock`` on its own, so this process's claims
        and releases go on meanwhile (the kernel walks the process's lock list for each lock, so
        thousands of claims take a while); the newcomer waits for ``ALONE`` until all are locked."""
        with self.lock:
            if self.closed or not self.alone:
                return True
            replaced = not self.same_file(self.path)
            if not replaced and self._nobody_else():
                return False
            self.alone = False  # claims from now on take locks
            self.written = None  # another process may write any key from now on: read them all
            self.known.clear()
            held = sorted(self.held, reverse=True)  # the kernel then puts each lock at its list's head: half the time
        if replaced:
            log.error("%s was deleted or replaced while in use: processes on this cache no longer see each "
                      "other's claims and may pay twice for a sample; stop them and start again", self.path)
        for byte in held:
            with self.lock:
                if self.closed:
                    return True
                if not self.held.get(byte):
                    continue
                try:
                    locked = self._try(fcntl.LOCK_EX, byte)  # (everyone else waits for ALONE)
                except OSError:  # (out of lock records?) ALONE is released all the same
                    locked = False
                if not locked:
                    log.error("cannot lock claim byte %d of %s on stepping down: another process may pay for "
                              "that key too", byte, self.path)
        with self.lock:
            if not self.closed:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, ALONE)
        return True

    def set_fresh(self, empty: bool) -> None:
        """(A cache, once its file is open and converted.) Whether the file had no rows while this process
        is alone on it; the first cache of the process to say so decides."""
        with self.lock:
            if self.fresh is None:
                self.fresh = self.alone and empty
                if self.fresh:
                    self.written = bytearray(WRITTEN_SLOTS)

    def mark_written(self, byte: int, key: str) -> None:
        """Before a row of ``key`` (with ``byte``) is written: the file may hold that key from now on,
        and what was known of its rows is not all any more."""
        if self.known:
            self.known.pop(key, None)
        written = self.written
        if written is not None:
            written[byte % WRITTEN_SLOTS] = 1  # one byte a slot: a store, safe from any thread

    def claim(self, byte: int, mine: dict[int, int] | None = None) -> int:
        """Claim ``byte`` (a key's, ``key_byte``) for this process: ``CLAIMED_NEW`` or ``CLAIMED_ALONE``
        while alone (the first when the file holds no row of a key with this byte; a hash collision
        says ALONE), else ``CLAIMED``, or 0 while another process holds it. ``mine``: the claiming
        cache's own counts, kept in the same step (one call a claim: this is on the executor's hot path)."""
        if self.forked:
            raise CacheError(f"a sample cache opened before this process was forked cannot claim keys in it "
                             f"({self.path}); open the cache again in the child")
        with self.lock:
            held = self.held
            count = held.get(byte, 0)
            if self.alone:
                written = self.written
                granted = CLAIMED_NEW if written is not None and not written[byte % WRITTEN_SLOTS] else CLAIMED_ALONE
            else:
                if not count:
                    try:
                        if not self._try(fcntl.LOCK_EX, byte):
                            return 0
                    except OSError as exc:
                        raise CacheError(f"cannot lock {self.path} ({exc.strerror}); pass another --cache") from None
                granted = CLAIMED
            held[byte] = count + 1
            if mine is not None:
                mine[byte] = mine.get(byte, 0) + 1
            return granted

    def release(self, byte: int, count: int = 1, mine: dict[int, int] | None = None) -> None:
        """Give up ``count`` of this process's claims on ``byte``; with ``mine`` (a cache's own counts,
        as ``claim`` kept them) only when that cache holds one."""
        if self.forked:
            return
        with self.lock:
            self._drop(byte, count, mine)

    def release_all(self, bytes_: list[int], mine: dict[int, int]) -> None:
        """``release`` of one claim on each of ``bytes_`` (a byte twice: two claims), under one lock."""
        if self.forked:
            return
        with self.lock:
            for byte in bytes_:
                self._drop(byte, 1, mine)

    def _drop(self, byte: int, count: int, mine: dict[int, int] | None) -> None:
        """(Under ``lock``.) See ``release``."""
        if mine is not None:
            had = mine.get(byte)
            if not had:
                return
            if had > count:
                mine[byte] = had - count
            else:
                del mine[byte]
        left = self.held.get(byte, 0) - count
        if left > 0:
            self.held[byte] = left
            return
        if self.held.pop(byte, None) is not None and not self.alone and not self.closed:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, byte)

    def close(self) -> None:
        """One user fewer; the last closes the file, which drops every lock of this process on it."""
        if self.forked:  # closing the inherited descriptor would drop the locks the child took itself
            self.closed = True
            return
        with _OPENING:
            with _FILES_LOCK:
                self.users -= 1
                if self.users > 0:
                    return
                if _FILES.get(self.path) is self:
                    del _FILES[self.path]
            with self.lock:
                self.closed = True
                self.held.clear()
                try:
                    os.close(self.fd)
                except OSError:
                    pass


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's locks (POSIX locks are not inherited): it opens afresh,
    and the claims files it inherited refuse to claim (and never close their descriptor, which would
    drop the child's own locks). The module's locks may have been held by another thread at the fork:
    new ones."""
    global _watcher, _FILES_LOCK, _OPENING
    for claims in _FILES.values():
        claims.forked = True
    _FILES.clear()
    _ALONE.clear()
    _watcher = None
    _FILES_LOCK, _OPENING = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _watch(claims: ClaimFile) -> None:
    """Add ``claims`` to what the watcher thread looks after, starting it if it is not running."""
    global _watcher
    with _FILES_LOCK:
        _ALONE.add(claims)
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_watch_loop, name="llmnet-claims-watch", daemon=True)
            _watcher.start()


def _stepped_down(claims: ClaimFile) -> bool:
    try:
        return claims.step_down_if_joined()
    except OSError as exc:  # the kernel refused a lock (out of lock records?): try again at the next look
        log.error("cannot turn the claims on %s into locks (%s); trying again", claims.path, exc.strerror)
        return False


def _watch_loop() -> None:
    global _watcher
    while True:
        time.sleep(ALONE_POLL_S)
        with _FILES_LOCK:
            files = list(_ALONE)
        done = [claims for claims in files if _stepped_down(claims)]
        with _FILES_LOCK:
            _ALONE.difference_update(done)
            if not _ALONE:
                _watcher = None
                return
