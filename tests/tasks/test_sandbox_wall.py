"""The kernel wall alone (``audit=False``): what the issue's attacks did, the wall stops.
Each test names the layer it needs and is skipped, saying which, where the machine lacks it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from llmnet.tasks.isolation import DIR_PREFIX, remove_stale_dirs
from llmnet.tasks.sandbox import run_sandboxed, sandbox_isolation

ROOT = Path(__file__).resolve().parents[2]
FAST = {"timeout_s": 5, "cpu_s": 3, "memory_mb": 256}
ISO = sandbox_isolation()


def needs(layer: str):
    return pytest.mark.skipif(layer not in ISO.layers, reason=f"this machine lacks the '{layer}' layer "
                              f"({ISO.describe()})")


def kernel(program: str, tests=("assert True",), **kw):
    return run_sandboxed(program, list(tests), audit=False, **{**FAST, **kw})


@pytest.fixture
def secret_dir():
    top = tempfile.mkdtemp(prefix="llmnet-wall-test-")
    private = os.path.join(top, "private")
    os.mkdir(private, 0o700)
    secret = f"SECRET-{uuid.uuid4().hex}"
    Path(private, "secret.txt").write_text(secret)
    os.chmod(os.path.join(private, "secret.txt"), 0o600)
    yield top, secret
    subprocess.run(["rm", "-rf", top], check=False)


def test_describe_names_every_active_layer():
    text = ISO.describe()
    for word in ("filesystem view", "network namespace", "pid namespace", "landlock", "dies with llmnet"):
        assert word in text
    assert set(ISO.layers) <= {"filesystem", "network", "pid", "landlock", "no-capabilities", "uid-drop",
                               "pdeathsig"}


@needs("filesystem")
def test_the_view_holds_only_what_the_interpreter_needs():
    r = kernel("import os\nprint(sorted(os.listdir('/')), os.path.exists('/root/.bashrc'),"
               " os.path.exists('/home'), len([p for p in os.listdir('/proc') if p.isdigit()]))\n")
    listing = r.stdout_tail
    assert r.passed, r.detail
    assert "'home'" not in listing and "'var'" not in listing and "'opt'" not in listing
    assert listing.rstrip().endswith("False False 2")      # only init and the worker in /proc


@needs("filesystem")
def test_writes_outside_the_temp_dir_fail_without_the_hook(tmp_path):
    os.chmod(tmp_path, 0o777)
    targets = [str(tmp_path / "evil"), f"/tmp/llmnet-evil-{uuid.uuid4().hex}", "/dev/shm/llmnet-evil",
               "/usr/llmnet-evil"]
    for target in targets:
        r = kernel(f"open({target!r}, 'w').write('x')\n")
        assert not r.passed
    assert not any(os.path.exists(t) for t in targets)


@needs("filesystem")
def test_mkfifo_and_mknod_outside_fail_without_the_hook(tmp_path):
    os.chmod(tmp_path, 0o777)
    for call in ("os.mkfifo({p!r})", "os.mknod({p!r}, stat.S_IFREG | 0o644)"):
        target = str(tmp_path / uuid.uuid4().hex)
        r = kernel("import os, stat\n" + call.format(p=target) + "\n")
        assert not r.passed and not os.path.exists(target)
    r = kernel("import os\nos.mkfifo('inside')\nprint(os.path.exists('inside'))\n")
    assert r.passed and "True" in r.stdout_tail            # the temp dir itself stays usable


CHDIR_RACE = """
import os, threading
here, stop, got = os.getcwd(), [False], []
def flip():
    while not stop[0]:
        for d in ({top!r}, here):
            try:
                os.chdir(d)
            except OSError:
                pass
t = threading.Thread(target=flip)
t.start()
for _ in range(3000):
    try:
        got.append(open('private/secret.txt').read())
        break
    except OSError:
        pass
stop[0] = True
t.join()
print(got)
"""


@needs("filesystem")
@pytest.mark.parametrize("audit", [False, True])
def test_chdir_race_reads_nothing(secret_dir, audit):
    top, secret = secret_dir
    r = run_sandboxed(CHDIR_RACE.format(top=top), ["assert True"], audit=audit, **FAST)
    assert secret not in r.stdout_tail + r.stderr_tail + r.detail


@needs("filesystem")
@pytest.mark.parametrize("audit", [False, True])
def test_dir_fd_reads_nothing(secret_dir, audit):
    top, secret = secret_dir
    program = ("import os, sys\nd = os.open(sys.prefix, os.O_RDONLY)\n"
               f"print(os.read(os.open('../' * 30 + {top!r}.lstrip('/') + '/private/secret.txt', os.O_RDONLY,"
               " dir_fd=d), 100))\n")
    r = run_sandboxed(program, ["assert True"], audit=audit, **FAST)
    assert not r.passed and secret not in r.stdout_tail + r.stderr_tail + r.detail


def test_hook_alone_stops_the_chdir_race_and_dir_fd(secret_dir):
    top, secret = secret_dir
    race = run_sandboxed(CHDIR_RACE.format(top=top), ["assert True"], isolate=False, **FAST)
    program = ("import os, sys\nd = os.open(sys.prefix, os.O_RDONLY)\n"
               f"print(os.read(os.open('../' * 30 + {top!r}.lstrip('/') + '/private/secret.txt', os.O_RDONLY,"
               " dir_fd=d), 100))\n")
    dir_fd = run_sandboxed(program, ["assert True"], isolate=False, **FAST)
    for r in (race, dir_fd):
        assert secret not in r.stdout_tail + r.stderr_tail + r.detail


def test_hook_refuses_mkfifo_and_mknod_anywhere(tmp_path):
    for call in ("os.mkfifo({p!r})", "os.mknod({p!r})"):
        target = str(tmp_path / uuid.uuid4().hex)
        r = run_sandboxed("import os\n" + call.format(p=target) + "\n", ["assert True"], isolate=False, **FAST)
        assert r.status == "blocked" and not os.path.exists(target)


def test_closures_reachable_from_modules_do_not_unhook(tmp_path):
    target = str(tmp_path / "evil")
    program = ("import sys, types\n"
               "for mod in list(sys.modules.values()):\n"
               "    for v in list(getattr(mod, '__dict__', dict()).values()):\n"
               "        for cell in (v.__closure__ or ()) if isinstance(v, types.FunctionType) else ():\n"
               "            try:\n"
               "                c = cell.cell_contents\n"
               "            except ValueError:\n                continue\n"
               "            if isinstance(c, types.FunctionType):\n"
               "                for inner in c.__closure__ or ():\n"
               "                    try:\n"
               "                        if isinstance(inner.cell_contents, frozenset):\n"
               "                            inner.cell_contents = frozenset()\n"
               "                        elif isinstance(inner.cell_contents, types.FunctionType):\n"
               "                            inner.cell_contents = lambda *a, **k: None\n"
               "                    except ValueError:\n                        pass\n"
               "import os\n"
               f"os.close(os.open({target!r}, os.O_CREAT | os.O_WRONLY))\n")
    r = run_sandboxed(program, ["assert True"], isolate=False, **FAST)
    assert r.status == "blocked" and not os.path.exists(target)


@needs("no-capabilities")
def test_the_worker_has_no_capability():
    r = kernel("print([l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'CapBnd'))])\n")
    assert r.passed and r.stdout_tail.count("0000000000000000") == 3, r.stdout_tail


@needs("landlock")
def test_landlock_denies_tcp_even_on_loopback_inside():
    r = kernel("import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n")
    assert not r.passed and "PermissionError" in r.detail


@needs("pdeathsig")
@needs("pid")
def test_the_sandbox_dies_with_llmnet():
    program = "import signal, time\nsignal.alarm(0)\ntime.sleep(60)\n"
    code = ("import sys\nfrom llmnet.tasks.sandbox import run_sandboxed\n"
            "run_sandboxed(sys.stdin.read(), ['assert True'], timeout_s=60, cpu_s=30, audit=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    proc.stdin.write(program.encode())
    proc.stdin.close()
    tag = f"{DIR_PREFIX}{proc.pid}-".encode()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not pids_with(tag):
        time.sleep(0.1)
    assert pids_with(tag), "the sandbox never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pids_with(tag):
        time.sleep(0.1)
    assert not pids_with(tag)
    left = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(tag.decode())]
    assert left                                      # killed -9: it could not clean up...
    remove_stale_dirs()                              # ... the next start does
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(tag.decode())]


def pids_with(tag: bytes) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if tag in fh.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def test_stale_dirs_of_live_processes_are_kept(tmp_path):
    mine = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
    dead = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{2**22 + 12345}-")   # above pid_max: never alive
    try:
        remove_stale_dirs()
        assert os.path.isdir(mine) and not os.path.exists(dead)
    finally:
        subprocess.run(["rm", "-rf", mine, dead], check=False)
