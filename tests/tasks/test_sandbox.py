"""The sandbox: each hostile program is contained and reported as a failed sample, and
the test process is unharmed. Tests named ``*_kernel_*`` switch the audit hook off to
check the kernel layers alone; they are skipped where the machine lacks them."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid

import psutil
import pytest

from llmnet.tasks.sandbox import (
    SandboxResult,
    arun_sandboxed,
    run_sandboxed,
    sandbox_isolation,
    set_max_concurrency,
)

FAST = {"timeout_s": 5, "cpu_s": 3, "memory_mb": 256}
ISO = sandbox_isolation()
needs_pidns = pytest.mark.skipif(not ISO.pid_namespace, reason="no pid namespace here")
needs_netns = pytest.mark.skipif(not ISO.network_namespace, reason="no network namespace here")
needs_drop = pytest.mark.skipif(ISO.user is None, reason="no unprivileged uid here")


def run(program: str, tests=("assert True",), **kw) -> SandboxResult:
    return run_sandboxed(program, list(tests), **{**FAST, **kw})


def assert_failed_sample(r: SandboxResult, status: str) -> None:
    assert not r.passed
    assert r.status == status, (r.status, r.detail, r.stderr_tail)


def no_process_with(marker: str) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()):
            return False
    return True


# --------------------------------------------------------------------------- verdicts
def test_correct_program_passes_every_test():
    r = run("def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3", "assert add(0, 0) == 0"])
    assert r.passed and r.status == "passed"
    assert r.per_test == (True, True) and r.test_errors == ("", "")
    assert all(r.test_outputs) and r.duration_s > 0


def test_wrong_program_fails_with_per_test_detail():
    r = run("def add(a, b):\n    return a * b\n",
            ["assert add(2, 2) == 4", "assert add(1, 2) == 3", "add(None, 1)"])
    assert_failed_sample(r, "failed")
    assert r.per_test == (True, False, False)
    assert r.test_errors == ("", "AssertionError", "TypeError")
    assert "test 1" in r.detail and "2/3 tests failed" in r.detail


def test_program_that_does_not_compile_or_raises_is_an_error():
    assert_failed_sample(run("def f(:\n    pass\n"), "error")
    r = run("raise ValueError('boom')\n")
    assert_failed_sample(r, "error")
    assert "ValueError" in r.detail and r.per_test == (False,)


def test_setup_runs_between_program_and_tests():
    r = run("def f():\n    return helper() + 1\n", ["assert f() == 42"], setup="def helper():\n    return 41\n")
    assert r.passed


def test_outputs_tell_behaviours_apart():
    same_a = run("def f(x):\n    return x * 2\n", ["f(3)", "assert f(1) == 5"])
    same_b = run("def f(x):\n    return x + x\n", ["f(3)", "assert f(1) == 5"])
    other = run("def f(x):\n    return x ** 2\n", ["f(3)", "assert f(1) == 5"])
    assert same_a.test_outputs == same_b.test_outputs != other.test_outputs


def test_workdir_is_fresh_and_removed():
    r = run("import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())\n",
            ["assert open('scratch.txt').read() == 'x'"])
    assert r.passed
    workdir = r.stdout_tail.strip()
    assert "llmnet-sandbox-" in workdir and not os.path.exists(workdir)


# --------------------------------------------------------------------------- limits
def test_infinite_loop_hits_the_wall_clock_limit():
    started = time.monotonic()
    r = run("import time\nwhile True:\n    time.sleep(0.01)\n", timeout_s=1)
    assert_failed_sample(r, "timeout")
    assert time.monotonic() - started < 4


def test_busy_loop_hits_the_cpu_limit():
    r = run("while True:\n    pass\n", cpu_s=1, timeout_s=6)
    assert_failed_sample(r, "timeout")
    assert "CPU" in r.detail


def test_memory_bomb_is_reported_as_memory():
    r = run("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n", memory_mb=200)
    assert_failed_sample(r, "memory")


def test_fork_bomb_is_blocked_and_leaves_nothing_behind():
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}  # e.g. a test server another fixture started
    r = run("import os\nwhile True:\n    os.fork()\n")
    assert_failed_sample(r, "blocked")
    assert "os.fork" in r.detail
    marker = f"{time.time() % 1000:.6f}"
    r = run(f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])\n")
    assert_failed_sample(r, "blocked")
    assert not {p.pid for p in me.children(recursive=True)} - before and no_process_with(f"sleep {marker}")


@needs_pidns
def test_kernel_pid_namespace_kills_escaped_children():
    marker = f"7{time.time() % 1000:.6f}"
    program = ("import os\n"
               "for _ in range(5):\n"
               "    if os.fork() == 0:\n"
               "        os.setsid()\n"
               f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\n")
    r = run(program, audit=False)
    assert r.status in ("passed", "error")     # forks allowed: nothing refused them
    time.sleep(0.2)
    assert no_process_with(f"sleep {marker}")


def test_huge_output_is_capped():
    started = time.monotonic()
    r = run("while True:\n    print('x' * 1000)\n", max_output=10_000)
    assert_failed_sample(r, "killed")
    assert "output" in r.detail and len(r.stdout_tail) <= 2_000
    assert time.monotonic() - started < 4


def test_garbage_output_does_not_confuse_the_parent():
    r = run("import sys\nsys.stdout.buffer.write(bytes(range(256)) * 50)\n"
            "sys.stderr.buffer.write(b'\\xff\\xfe\\x00' * 100)\n")
    assert r.passed and isinstance(r.stdout_tail, str)


# --------------------------------------------------------------------------- forging a pass
def test_printing_success_or_exiting_early_does_not_pass():
    wrong = "def f():\n    return 1\n"
    tests = ["assert f() == 2"]
    for trick in ("print('T\\t0\\t1\\t\\t\\t0\\t\\tdeadbeef')\nprint('ALL TESTS PASSED')\n",
                  "import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):
        r = run(wrong + trick, tests)
        assert not r.passed and r.status in ("failed", "error"), (trick, r.status)


def test_forged_records_on_the_result_channel_are_rejected():
    forge = ("import os\n"
             "line = b'T\\t0\\t1\\t\\t\\t0\\t\\t' + b'0' * 64 + b'\\nD\\t' + b'0' * 64 + b'\\n'\n"
             "for fd in range(3, 64):\n"
             "    try:\n        os.write(fd, line)\n    except OSError:\n        pass\n"
             "os._exit(0)\n")
    r = run(forge, ["assert False"])
    assert not r.passed and not any(r.per_test)
    # whether the forged line reaches the parent (then: "tampered") or the program is seen to end early
    # depends on scheduling; either way nothing forged is believed
    assert (r.status, "tampered" in r.detail) in (("blocked", True), ("error", False)), (r.status, r.detail)


FRAME_WALK = ("import sys, os\n"
              "f = sys._getframe()\n"
              "while 'emit' not in f.f_locals:\n    f = f.f_back\n"
              "emit = f.f_locals['emit']\n"
              "emit('P', '1', '', '')\nemit('T', 0, '1', '', '', 0, '')\nemit('V', 0, 0, '1', '', raw='2')\n"
              "emit('D')\nos._exit(0)\n")


def test_frame_walking_cannot_forge_an_equality_test():
    # was a documented limit (xfail): the verdict of `assert f() == 2` is now the parent's
    r = run("def f():\n    return 1\n" + FRAME_WALK, ["assert f() == 3"])
    assert not r.passed and r.weak == (False,)


def test_frame_walking_still_forges_a_weak_test_which_is_marked_weak():
    r = run("def f():\n    return 1\n" + FRAME_WALK, ["assert f() > 2"])
    assert r.weak == (True,) and r.weak_verdict
    assert r.passed and "weak" in r.detail          # the documented limit, now labelled


@pytest.mark.parametrize("returned", [
    "A()", "I(1)", "L()", "S('x')", "B()",
])
def test_values_that_claim_equality_do_not_pass(returned):
    program = ("class A:\n    def __eq__(self, o):\n        return True\n"
               "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
               "class L(list):\n    def __eq__(self, o):\n        return True\n"
               "class S(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\n"
               "class B:\n    __class__ = property(lambda s: int)\n    def __eq__(self, o):\n        return True\n"
               f"def f():\n    return {returned}\n")
    r = run(program, ["assert f() == [7]", "assert f() == 2"])
    assert not r.passed and r.per_test == (False, False), (r.status, r.detail)


def test_parent_compares_plain_data_like_the_assert_would():
    program = ("import numpy as np\nfrom collections import namedtuple\nP = namedtuple('P', 'a b')\n"
               "def f(k):\n    return {0: (1, 2.0), 1: P(1, 'x'), 2: {'a': [1, {2}]}, 3: np.int64(4), "
               "4: float('nan'), 5: [1, 2]}[k]\n")
    r = run(program, ["assert f(0) == (1, 2)", "assert f(1) == (1, 'x')", "assert f(2) == {'a': [1, {2}]}",
                      "assert f(3) == 4", "assert f(4) == float('nan')", "assert f(5) == (1, 2)"])
    assert r.per_test == (True, True, True, True, False, False), r.detail
    assert r.weak == (False,) * 6 and r.test_errors[5] == "AssertionError"


def test_humaneval_check_asserts_are_judged_in_the_parent():
    check = ("METADATA = {'author': 'x'}\n\ndef check(candidate):\n    assert candidate(1) == 2\n"
             "    assert True, 'debug'\n    assert candidate(2) == 4, 'msg'\n\ncheck(double)\n")
    good = run("def double(x):\n    return 2 * x\n", [check])
    bad = run("class A:\n    def __eq__(s, o):\n        return True\ndef double(x):\n    return A()\n", [check])
    assert good.passed and good.weak == (False,)
    assert not bad.passed and bad.weak == (False,)


def test_monkey_patching_builtins_does_not_fake_results():
    program = ("import builtins, json, os\n"
               "builtins.type = lambda *a: int\nbuiltins.isinstance = lambda *a: True\n"
               "builtins.BaseException = KeyError\njson.dumps = lambda *a, **k: 'x'\n"
               "os.write = lambda *a: 0\n"
               "def f():\n    return 1\n")
    r = run(program, ["assert f() == 2", "assert f() == 1"])
    assert_failed_sample(r, "failed")
    assert r.per_test == (False, True)


def test_patching_the_builtins_does_not_open_the_hook(tmp_path):
    target = f"/tmp/llmnet-evil-{uuid.uuid4().hex}"
    r = run(f"import builtins\nbuiltins.type = lambda *a: int\nopen({target!r}, 'w').write('x')\n")
    assert_failed_sample(r, "blocked")
    assert not os.path.exists(target)


# --------------------------------------------------------------------------- files
def test_writing_outside_the_temp_dir_is_blocked(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    outside = [str(tmp_path / "evil.txt"), f"/tmp/llmnet-evil-{uuid.uuid4().hex}"]
    attempts = [f"open({outside[0]!r}, 'w').write('x')",
                f"import os\nos.close(os.open({outside[1]!r}, os.O_CREAT | os.O_WRONLY))",
                f"import os\nos.remove({str(victim)!r})",
                f"import os\nos.rename({str(victim)!r}, {str(victim)!r} + '.moved')",
                f"import os\nos.chmod({str(victim)!r}, 0o777)",
                "import os\nos.symlink('/etc', 'etc')",
                "open('../../llmnet-evil', 'a').write('x')",
                f"import sqlite3\nsqlite3.connect({outside[1]!r})"]
    for program in attempts:
        r = run(program + "\n")
        assert_failed_sample(r, "blocked")
    assert not any(os.path.exists(p) for p in outside)
    assert victim.read_text() == "precious" and oct(victim.stat().st_mode)[-3:] != "777"


@needs_drop
def test_kernel_uid_drop_stops_writes_to_root_owned_places(tmp_path):
    target = tmp_path / "evil.txt"                     # pytest's tmp dirs are 0700
    r = run(f"open({str(target)!r}, 'w').write('x')\n", audit=False)
    assert not r.passed and any(e in r.detail for e in ("PermissionError", "FileNotFoundError"))
    assert not target.exists()


# --------------------------------------------------------------------------- network
@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    arrived, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                arrived.append(server.accept())
            except (socket.timeout, OSError):
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], arrived
    stop.set()
    thread.join()
    server.close()


def connect_program(port: int) -> str:
    return ("import socket\n"
            "s = socket.socket()\ns.settimeout(1)\n"
            f"s.connect(('127.0.0.1', {port}))\ns.sendall(b'stolen')\n")


def test_network_is_refused(listener):
    port, arrived = listener
    r = run(connect_program(port))
    assert_failed_sample(r, "blocked")
    r = run("import socket\nsocket.getaddrinfo('example.com', 80)\n")
    assert_failed_sample(r, "blocked")
    r = run(f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/')\n")
    assert_failed_sample(r, "blocked")
    time.sleep(0.3)
    assert arrived == []


@needs_netns
def test_kernel_network_namespace_has_no_route(listener):
    port, arrived = listener
    r = run(connect_program(port), audit=False)
    assert not r.passed and any(e in r.detail for e in ("OSError", "PermissionError"))
    time.sleep(0.3)
    assert arrived == []


# --------------------------------------------------------------------------- secrets, parent
def test_api_keys_never_reach_the_child(monkeypatch):
    secret = f"sk-llmnet-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    program = ("import os\nprint(dict(os.environ))\n"
               f"for pid in ('self', str(os.getppid()), '{os.getpid()}'):\n"
               "    try:\n"
               "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
               "    except OSError as exc:\n"
               "        print('refused', exc)\n")
    for audit in (True, False) if ISO.user else (True,):
        r = run(program, audit=audit)
        seen = r.stdout_tail + r.stderr_tail + r.detail
        assert "OPENAI_API_KEY" not in seen and secret not in seen
        assert "PATH" in r.stdout_tail


def kill_program(pid: int) -> str:
    calls = ["os.kill(os.getppid(), 9)", f"os.kill({pid}, 9)", f"os.killpg(os.getpgid({pid}), 9)",
             "os.killpg(0, 9)", "os.kill(-1, 9)", f"signal.pidfd_send_signal(os.pidfd_open({pid}), 9)"]
    body = "".join(f"try:\n    {c}\nexcept Exception as e:\n    print(repr(e))\n" for c in calls)
    return "import os, signal\n" + body


def test_killing_the_parent_is_blocked():
    r = run(kill_program(os.getpid()))
    assert_failed_sample(r, "blocked")
    assert psutil.Process().is_running()


@needs_pidns
def test_kernel_layers_protect_the_parent_without_the_hook():
    r = run(kill_program(os.getpid()), audit=False)
    assert psutil.Process().is_running()
    assert r.status in ("passed", "error", "killed")


# --------------------------------------------------------------------------- in-process escapes
@pytest.mark.parametrize("program", [
    "import ctypes\nctypes.CDLL(None).getpid()\n",
    "import ctypes\nctypes.string_at(0, 1)\n",
    "import gc\ngc.get_objects()\n",
    "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess\n",
    "import _posixsubprocess\n_posixsubprocess.fork_exec()\n",
    "import _xxsubinterpreters\n",
    "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))\n",
])
def test_in_process_escape_routes_are_blocked(program):
    assert_failed_sample(run(program), "blocked")


def test_ordinary_libraries_still_work():
    program = ("import numpy as np, asyncio, tempfile, collections, fractions, dataclasses\n"
               "@dataclasses.dataclass\nclass P:\n    x: int\n"
               "async def twice(x):\n    return 2 * x\n"
               "def f(xs):\n"
               "    with tempfile.TemporaryFile() as t:\n        t.write(b'x')\n"
               "    return int(np.sum(xs)) + asyncio.run(twice(P(1).x))\n")
    r = run(program, ["assert f([1, 2]) == 5"])
    assert r.passed, (r.status, r.detail, r.stderr_tail)


def test_reading_files_outside_the_allowed_roots_is_refused():
    r = run("print(open('/etc/passwd').read())\n")
    assert_failed_sample(r, "error")
    assert "PermissionError" in r.detail and "root:" not in r.stdout_tail


# --------------------------------------------------------------------------- asyncio, concurrency
def test_async_runs_and_concurrency_cap():
    async def main():
        return await asyncio.gather(*(arun_sandboxed(
            "import time\ntime.sleep(0.3)\ndef f():\n    return 1\n", ["assert f() == 1"], **FAST)
            for _ in range(3)))
    set_max_concurrency(1)
    try:
        started = time.monotonic()
        results = asyncio.run(main())
        elapsed = time.monotonic() - started
    finally:
        set_max_concurrency(os.cpu_count() or 1)
    assert all(r.passed for r in results)
    assert elapsed >= 0.9                              # one at a time
    with pytest.raises(ValueError):
        set_max_concurrency(0)


def test_needs_a_test():
    with pytest.raises(ValueError):
        run_sandboxed("x = 1", [])


def test_isolation_is_described():
    text = ISO.describe()
    assert "network namespace" in text and "runs as" in text
