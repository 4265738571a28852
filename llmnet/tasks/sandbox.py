"""Run untrusted, model-written Python against tests in a sandboxed subprocess.

Generated code never runs in the llmnet process. ``run_sandboxed(program, tests)``
starts a fresh interpreter (``python -I -B``) in a new session, with a scrubbed
environment (no inherited variable, so no API key; ``PATH=/usr/bin:/bin``), in a fresh
temporary directory that is removed afterwards. The parent always kills the whole
process group at the end. ``sandbox_isolation().describe()`` says which kernel layers
this machine gives (``llmnet.tasks.isolation`` probes them once).

The kernel is the wall (``llmnet.tasks._sandbox_wall``; not bypassable from Python):
  * a filesystem view (mount namespace, ``pivot_root``): a read-only tmpfs root holding
    only ``/usr``, the libraries, the interpreter's prefixes and ``sys.path``, a few
    ``/etc`` files and ``/dev/null`` and kin, all read-only, a ``/proc`` of the sandbox's
    own pid namespace, and the program's temp dir, the one writable place. ``/root``,
    homes, caches, ``/tmp``, other processes do not exist for the program.
  * no capability at all (bounding set emptied, secure bits locked, ``no_new_privs``) and,
    when llmnet runs as root, the uid ``nobody``; elsewhere the same inside a user namespace.
  * Landlock where the kernel has it: read the view, write the temp dir, no TCP bind or
    connect, signals and abstract Unix sockets scoped to the sandbox.
  * a network namespace (only a loopback that is down) and a pid namespace whose init is
    a trusted process: when it exits, the kernel kills everything the program started;
    ``setpriv --pdeathsig`` and ``unshare --kill-child`` make the chain die with llmnet,
    and temp dirs left by a killed llmnet are removed at the next start.
  * resource limits: wall clock (parent kills the group), CPU seconds (RLIMIT_CPU),
    address space (RLIMIT_AS), file size (RLIMIT_FSIZE), open files, no core dumps,
    processes (RLIMIT_NPROC: the uid's running threads + ``max_procs``); stdout+stderr
    are read up to ``max_output`` bytes, then the group is killed.

The audit hook is a second fence (``llmnet.tasks._sandbox_hook``): it refuses and reports
process creation, signals, sockets, DNS, writes outside the temp dir, links, ``mkfifo`` /
``mknod``, ctypes, sub-interpreters, ``gc`` walks, rewriting its own functions; it refuses
quietly reads outside the interpreter's roots, changing directory and opening directories
outside the temp dir. It resolves relative paths against the temp dir fixed before the
program starts.

Verdicts: a test made of ``assert <call> == <literal>`` (MBPP's tests, the asserts of
HumanEval's ``check``; ``llmnet.tasks.checks``) is judged in this process: the child only
evaluates the calls and sends their values as plain data, and never sees the expected
values, so an ``__eq__`` that is always true, a forged record, an early exit or a patched
builtin cannot make a wrong program pass. Any other test runs in the child and passes
when it raises nothing; it is ``weak`` (``SandboxResult.weak``, and "passed (weak)" in a
run's trace): a program can walk stack frames to the prelude's reporter and key and forge
its verdict. Records travel on a private HMAC-authenticated pipe; stdout is never parsed.

Measured by ``experiments/sandbox_attack.py`` (see the README for the figures).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import hmac
import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from llmnet.errors import LlmnetError
from llmnet.tasks.checks import (
    EqualityTest,
    decode_value,
    split_equality_test,
    values_equal,
)
from llmnet.tasks.isolation import (
    DIR_PREFIX,
    NO_ISOLATION,
    PIVOT_ROOT,
    Isolation,
    find_isolation,
    remove_stale_dirs,
    view_paths,
)

Status = Literal["passed", "failed", "timeout", "memory", "killed", "error", "blocked"]

_CLEAN_PATH = "/usr/bin:/bin"
_TAIL_CHARS = 2_000
_DETAIL_CHARS = 300
_RECORD_LIMIT = 4_096
_XCPU_EXIT = 128 + signal.SIGXCPU
_SIGNALS = frozenset(int(sig) for sig in signal.valid_signals())


class SandboxError(LlmnetError):
    """The sandbox itself could not run (not a verdict on the program)."""


@dataclass(frozen=True)
class SandboxResult:
    """The verdict on one program: ``passed`` only if every test has an authentic pass.

    ``per_test``, ``test_errors`` (exception type name, "" on success, "not run" when
    the child stopped first), ``test_outputs`` (a digest of the values the test's calls
    returned, or of those compared by ``assert x == y`` and of bare expression statements
    in a weak test) and ``weak`` (judged inside the sandbox, forgeable by the program)
    line up with the tests that were given.
    """

    passed: bool
    status: Status
    detail: str
    per_test: tuple[bool, ...]
    duration_s: float
    stdout_tail: str = ""
    stderr_tail: str = ""
    test_errors: tuple[str, ...] = ()
    test_outputs: tuple[str, ...] = ()
    cpu_s: float = 0.0
    weak: tuple[bool, ...] = ()

    @property
    def weak_verdict(self) -> bool:
        """Did any test's verdict come from inside the sandbox (forgeable by the program)?"""
        return any(self.weak)

    @property
    def n_passed(self) -> int:
        return sum(self.per_test)


# --------------------------------------------------------------------------- child side
# The child runs the source of the wall, the hook and the prelude (read here, never imported
# to run); its command line stays short: it reads that text as the first line of stdin.
_CHILD = "".join((resources.files("llmnet.tasks") / name).read_text(encoding="utf-8")
                 for name in ("_sandbox_wall.py", "_sandbox_hook.py", "_sandbox_child.py")) \
    + "_prelude()\n"
_LOADER = "import sys, json; exec(json.loads(sys.stdin.buffer.readline()))"


# --------------------------------------------------------------------------- isolation
_isolation: Isolation | None = None
_isolation_lock = threading.Lock()


def sandbox_isolation() -> Isolation:
    """Probe (once per process) which kernel isolation layers work on this machine."""
    global _isolation
    with _isolation_lock:
        if _isolation is None:
            remove_stale_dirs()
            _isolation = find_isolation(run_sandboxed)
        return _isolation


# --------------------------------------------------------------------------- concurrency
class _Slots:
    """A resizable cap on sandboxes running at once, shared by sync and async callers."""

    def __init__(self, limit: int):
        self.limit, self.busy = limit, 0
        self.cond = threading.Condition()
        self.executor = concurrent.futures.ThreadPoolExecutor(limit, "llmnet-sandbox")

    @contextlib.contextmanager
    def held(self):
        with self.cond:
            self.cond.wait_for(lambda: self.busy < self.limit)
            self.busy += 1
        try:
            yield
        finally:
            with self.cond:
                self.busy -= 1
                self.cond.notify()

    def resize(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max concurrency must be >= 1, got {limit}")
        with self.cond:
            self.limit = limit
            old, self.executor = self.executor, concurrent.futures.ThreadPoolExecutor(
                limit, "llmnet-sandbox")
            self.cond.notify_all()
        old.shutdown(wait=False)


_slots = _Slots(max(1, os.cpu_count() or 1))


def set_max_concurrency(limit: int) -> None:
    """How many sandboxes may run at once in this process (default: CPU count)."""
    _slots.resize(limit)


# --------------------------------------------------------------------------- parent side
@dataclass
class _Run:
    stdout: bytearray
    stderr: bytearray
    results: bytearray
    timed_out: bool = False
    overflow: bool = False
    returncode: int | None = None
    cpu_s: float = 0.0


def _communicate(proc: subprocess.Popen, payload: bytes, result_fd: int, deadline: float,
                 max_output: int, max_results: int) -> _Run:
    """Feed stdin, collect the three pipes (bounded), stop at exit, deadline or overflow;
    then kill the whole group and reap the leader."""
    run = _Run(bytearray(), bytearray(), bytearray())
    sinks = {proc.stdout.fileno(): run.stdout, proc.stderr.fileno(): run.stderr,
             result_fd: run.results}
    stdin = proc.stdin.fileno()
    sel = selectors.DefaultSelector()
    for fd in (*sinks, stdin):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE if fd == stdin else selectors.EVENT_READ)
    view = memoryview(payload)
    try:
        while not run.overflow:
            left = deadline - time.monotonic()
            if left <= 0:
                run.timed_out = True
                break
            exited = _exited(proc.pid)
            if not sel.get_map():
                if exited:
                    break
                time.sleep(min(left, 0.005))
                continue
            events = sel.select(0 if exited else min(left, 0.05))
            if exited and not events:
                break                   # exited; whatever is still open belongs to strays
            for key, _ in events:
                if key.fd == stdin:
                    try:
                        view = view[os.write(stdin, view[:65536]):]
                    except BlockingIOError:
                        continue
                    except OSError:     # the child is gone or closed its stdin
                        view = view[len(view):]
                    if not view:
                        sel.unregister(stdin)
                        proc.stdin.close()
                    continue
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                sinks[key.fd] += chunk
                run.overflow = len(run.stdout) + len(run.stderr) > max_output
                if len(run.results) > max_results:
                    sel.unregister(key.fd)
    finally:
        sel.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)      # leader not reaped yet: pgid still ours
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:                   # reaped behind our back (SIGCHLD handler)
            proc.returncode = -signal.SIGKILL
        else:
            proc.returncode = run.returncode = os.waitstatus_to_exitcode(status)
            run.cpu_s = usage.ru_utime + usage.ru_stime
    return run


def _exited(pid: int) -> bool:
    """Has the child exited? It is left unreaped so that its group id stays reserved."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None and info.si_pid == pid


@dataclass
class _Records:
    """What the child reported, authenticated: program outcome (ok, error type, message),
    per test (ok, error type, output digest, message), blocked operations."""

    program: tuple[str, str, str] | None = None
    tests: dict[int, tuple[bool, str, str, str]] = field(default_factory=dict)
    values: dict[tuple[int, int], tuple[bool, str, str]] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    done: bool = False
    forged: int = 0


def _parse_records(raw: bytes, key: bytes, n_tests: int, max_value: int) -> _Records:
    rec = _Records()
    for line in raw.split(b"\n"):
        if not line:
            continue
        body, _, mac = line.rpartition(b"\t")
        good = len(line) <= _RECORD_LIMIT + max_value and hmac.compare_digest(
            hmac.digest(key, body, "sha256").hex().encode(), mac)
        fields = body.decode("utf-8", "replace").split("\t") if good else []
        kind = fields[0] if fields else ""
        if kind == "P" and len(fields) == 4 and rec.program is None:
            rec.program = tuple(fields[1:])
        elif kind == "T" and len(fields) == 7 and fields[1].isdigit() \
                and int(fields[1]) < n_tests and int(fields[1]) not in rec.tests:
            rec.tests[int(fields[1])] = (fields[2] == "1", fields[3], fields[4], fields[6])
        elif kind == "V" and len(fields) == 6 and fields[1].isdigit() and fields[2].isdigit() \
                and (int(fields[1]), int(fields[2])) not in rec.values:
            rec.values[int(fields[1]), int(fields[2])] = (fields[3] == "1", fields[4], fields[5])
        elif kind == "B" and len(fields) == 3:
            rec.blocked.append(f"{fields[1]} {fields[2]}".strip())
        elif kind == "D" and len(fields) == 1:
            rec.done = True
        else:
            rec.forged += 1
    return rec


def _tail(data: bytes, n: int = _TAIL_CHARS) -> str:
    return data[-4 * n:].decode("utf-8", "replace")[-n:]


def _verdict(run: _Run, rec: _Records, n_tests: int, cpu_limit: float) -> tuple[Status, str]:
    tests, code = rec.tests, run.returncode
    stderr = _tail(bytes(run.stderr), 4_000)
    finished = rec.done and rec.program is not None and (rec.program[0] != "1" or
                                                         len(tests) == n_tests)
    if rec.forged:
        return "blocked", f"result channel tampered with ({rec.forged} forged or garbled lines)"
    if rec.blocked:
        return "blocked", "blocked: " + "; ".join(rec.blocked[:3])
    if run.timed_out:
        return "timeout", "wall-clock time limit exceeded"
    if run.overflow:
        return "killed", "output limit exceeded (stdout+stderr)"
    if not finished and (code == _XCPU_EXIT or (code in (-signal.SIGKILL, -signal.SIGXCPU)
                                                and run.cpu_s >= 0.9 * cpu_limit)):
        return "timeout", f"CPU time limit ({cpu_limit:g} s) exceeded"
    errors = {t[1] for t in tests.values()} | {rec.program[1] if rec.program else ""}
    if "MemoryError" in errors or not finished and (
            "MemoryError" in stderr or "Cannot allocate memory" in stderr):
        return "memory", "memory limit exceeded"
    if not finished:
        if code is not None and code < 0:
            return "killed", f"killed by {signal.Signals(-code).name}" \
                if -code in signal.valid_signals() else f"killed by signal {-code}"
        missing = [i for i in range(n_tests) if i not in tests]
        what = "the program finished" if rec.program is None else f"tests {missing[:5]} reported"
        return "error", f"exited with code {code} before {what}: {stderr.strip()[-200:]}"
    if rec.program[0] != "1":
        return "error", rec.program[2]
    failed = [i for i in range(n_tests) if not tests[i][0]]
    if failed:
        return "failed", (f"{len(failed)}/{n_tests} tests failed; "
                          f"test {failed[0]}: {tests[failed[0]][3]}")
    return "passed", f"{n_tests}/{n_tests} tests passed"


def _judge(rec: _Records, splits: list[EqualityTest | None]) -> None:
    """Fill ``rec.tests`` for the equality tests from the values the child reported: a test
    passes when every call returned plain data equal to the expected value, which the child
    never saw. A ``T`` record for such a test (only a forger sends one) is dropped."""
    for i, split in enumerate(splits):
        if split is None:
            continue
        rec.tests.pop(i, None)
        got = [rec.values.get((i, j)) for j in range(len(split.calls))]
        if any(g is None for g in got):
            continue                                   # the child stopped before the end
        digest = hashlib.sha256("\x00".join(g[2] if g[0] else "!" + g[1] for g in got)
                                .encode("utf-8", "surrogateescape")).hexdigest()[:16]
        for j, (ok, error, text) in enumerate(got):
            if not ok:
                rec.tests[i] = (False, error, digest, f"{split.calls[j]}: {error} {text}".strip())
                break
            try:
                value = decode_value(text)
            except (ValueError, TypeError, RecursionError):
                rec.tests[i] = (False, "NotPlainData", digest, f"{split.calls[j]}: bad value")
                break
            if not values_equal(value, split.expected[j]):
                rec.tests[i] = (False, "AssertionError", digest,
                                f"{split.calls[j]} returned {text[:80]}")
                break
        else:
            rec.tests[i] = (True, "", digest, "")


def _nproc_base(uid: int | None) -> int | None:
    """Threads the uid already runs (RLIMIT_NPROC counts them all); None: no limit to set."""
    if uid is None or uid == 0:
        return None
    count = 0
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                count += len(os.listdir(f"/proc/{name}/task"))
        except OSError:
            pass
    return count


def run_sandboxed(program: str, tests: Sequence[str], *, timeout_s: float = 5.0,
                  cpu_s: float = 5.0, memory_mb: int = 512, max_procs: int = 16,
                  max_output: int = 64_000, max_file_mb: int = 16, setup: str = "",
                  isolate: bool = True, audit: bool = True, max_value_kb: int = 256,
                  _iso: Isolation | None = None) -> SandboxResult:
    """Run ``program``, then ``setup``, then each test snippet, in a sandboxed child.

    Each test is a snippet run in the program's namespace (an ``assert`` line, or a
    ``check`` function followed by ``check(entry_point)``). A test made only of
    ``assert <expr> == <literal>`` (see ``llmnet.tasks.checks``) is judged here: the child
    evaluates ``<expr>`` and returns its value as plain data (at most ``max_value_kb``), and
    this process compares it with the literal. Any other test passes when it raises nothing
    in the child; it is marked ``weak`` (a hostile program can forge its verdict).
    ``isolate=False`` skips the kernel layers and ``audit=False`` the audit hook: both exist
    to test each layer on its own. Raises ``SandboxError`` only when the sandbox itself
    cannot start.
    """
    tests = list(tests)
    if not all(isinstance(t, str) for t in (program, setup, *tests)):
        raise TypeError("program, setup and tests must be strings")
    if not tests:
        raise ValueError("run_sandboxed needs at least one test")
    iso = _iso or (sandbox_isolation() if isolate else NO_ISOLATION)
    splits = [split_equality_test(t) for t in tests]
    n_calls = sum(len(sp.calls) for sp in splits if sp is not None)
    max_value = int(max_value_kb) * 1024
    key, cpu_limit = secrets.token_bytes(32), max(1, math.ceil(cpu_s))
    with _slots.held():
        started = time.monotonic()
        base = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
        workdir, root = os.path.join(base, "work"), os.path.join(base, "root")
        result_r = result_w = -1
        try:
            os.mkdir(workdir, 0o700)
            os.mkdir(root, 0o700)
            if iso.uid is not None:
                os.chown(workdir, iso.uid, iso.gid)
            result_r, result_w = os.pipe()
            wall = None
            if iso.wall != "none":
                wall = {"uid": iso.uid, "gid": iso.gid, "landlock": iso.landlock,
                        "root": root, "pivot_root_nr": PIVOT_ROOT.get(os.uname().machine, 155),
                        "paths": view_paths(workdir) if iso.filesystem and iso.wall != "bwrap"
                        else []}
            payload = json.dumps({
                "key": key.hex(), "fd": result_w, "workdir": workdir, "program": program,
                "setup": setup, "audit": audit, "memory_mb": int(memory_mb),
                "tests": [t if sp is None else {"calls": list(sp.calls)}
                          for t, sp in zip(tests, splits)],
                "cpu_s": cpu_limit, "max_procs": int(max_procs), "max_value": max_value,
                "nproc_base": _nproc_base(iso.uid if iso.uid is not None else
                                          (os.getuid() if iso.wall != "none" else None)),
                "max_file_bytes": int(max_file_mb * 1024 * 1024), "wall": wall,
                "backstop_s": int(timeout_s) + 5}).encode()
            payload = json.dumps(_CHILD).encode() + b"\n" + payload
            env = {"PATH": _CLEAN_PATH, "HOME": workdir, "TMPDIR": workdir,
                   "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1",
                   "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            per_run = ["--bind", workdir, workdir, "--chdir", workdir, "--"] \
                if iso.wall == "bwrap" else []
            cmd = [*iso.prefix, *per_run, sys.executable, "-I", "-B", "-c", _LOADER]
            try:
                proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        pass_fds=(result_w,), start_new_session=True)
            except OSError as exc:
                raise SandboxError(f"cannot start the sandbox: {exc}") from exc
            os.close(result_w)
            result_w = -1
            with proc:
                run = _communicate(proc, payload, result_r, started + timeout_s, max_output,
                                   (len(tests) + n_calls + 32) * _RECORD_LIMIT
                                   + n_calls * max_value)
        finally:
            for fd in (result_r, result_w):
                if fd >= 0:
                    os.close(fd)
            shutil.rmtree(base, ignore_errors=True)
        duration = time.monotonic() - started
    code = run.returncode
    if iso.wall != "none" and code is not None and code > 128 and code - 128 in _SIGNALS:
        run.returncode = -(code - 128)      # the init process reports a killed worker so
    rec = _parse_records(bytes(run.results), key, len(tests), max_value)
    _judge(rec, splits)
    status, detail = _verdict(run, rec, len(tests), cpu_limit)
    weak = tuple(sp is None for sp in splits)
    if status == "passed" and any(weak):
        detail += f" ({sum(weak)} weak: judged inside the sandbox)"
    results = rec.tests
    return SandboxResult(
        passed=status == "passed", status=status, detail=detail[:_DETAIL_CHARS],
        per_test=tuple(results.get(i, (False,))[0] for i in range(len(tests))),
        duration_s=duration, stdout_tail=_tail(bytes(run.stdout)),
        stderr_tail=_tail(bytes(run.stderr)),
        test_errors=tuple(results[i][1] if i in results else "not run"
                          for i in range(len(tests))),
        test_outputs=tuple(results[i][2] if i in results else "" for i in range(len(tests))),
        cpu_s=run.cpu_s, weak=weak)


async def arun_sandboxed(program: str, tests: Sequence[str], **limits) -> SandboxResult:
    """``run_sandboxed`` from asyncio: runs on a dedicated thread pool sized to the
    concurrency cap, so that waiting sandboxes never hold the loop's default executor."""
    loop = asyncio.get_running_loop()
    call = functools.partial(run_sandboxed, program, list(tests), **limits)
    return await loop.run_in_executor(_slots.executor, call)
