"""Which kernel layers the sandbox can use on this machine, and the filesystem view it builds.

Probed once per process by ``llmnet.tasks.sandbox.sandbox_isolation``: each candidate (as
root: ``unshare`` mount, network and pid namespaces with the worker dropped to ``nobody``;
otherwise the same inside a user namespace; last, network and pid namespaces without a
filesystem view) runs a probe program, and the first whose probe shows what it promises
(only ``lo``, the worker as pid 2 under its own init, no capability, the same Python) wins.
``Isolation.describe()`` says which layers are active.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmnet.errors import LlmnetError

DIR_PREFIX = "llmnet-sandbox-"
_CLEAN_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Isolation:
    """Which kernel layers this machine gives the sandbox (probed once, cached).

    ``filesystem``: the program sees only a read-only view of what the interpreter needs
    plus its own temp dir (mount namespace, ``pivot_root``). ``landlock``: the Landlock ABI
    the worker restricts itself with (0: none). ``pdeathsig``: the sandbox dies with llmnet.
    """

    network_namespace: bool
    pid_namespace: bool
    user: str | None
    capabilities: tuple[str, ...]
    prefix: tuple[str, ...]
    uid: int | None = None
    gid: int | None = None
    filesystem: bool = False
    landlock: int = 0
    pdeathsig: bool = False
    wall: str = "none"             # "unshare" (as root), "bwrap", "unshare --user", "none"

    def describe(self) -> str:
        user = self.user or f"uid {os.geteuid()} (no drop)"
        caps = ", capabilities: " + ",".join(self.capabilities) if self.capabilities else \
            (", no capabilities" if self.wall != "none" else "")
        return (f"wall: {self.wall}, "
                f"filesystem view: {'read-only, own temp dir writable' if self.filesystem else 'no'}, "
                f"network namespace: {'yes' if self.network_namespace else 'no'}, "
                f"pid namespace: {'yes' if self.pid_namespace else 'no'}, "
                f"landlock: {'ABI %d' % self.landlock if self.landlock else 'no'}, "
                f"dies with llmnet: {'yes' if self.pdeathsig else 'no'}, runs as {user}{caps}")

    @property
    def layers(self) -> tuple[str, ...]:
        """The kernel layers that are active, by name."""
        named = (("filesystem", self.filesystem), ("network", self.network_namespace),
                 ("pid", self.pid_namespace), ("landlock", self.landlock > 0),
                 ("no-capabilities", self.wall != "none"),
                 ("uid-drop", self.uid is not None or "65534" in (self.user or "")),
                 ("pdeathsig", self.pdeathsig))
        return tuple(name for name, on in named if on)


NO_ISOLATION = Isolation(False, False, None, (), ())


_PROBE = ("import os, socket, sys, json, fractions, decimal, statistics\n"
          "def probe():\n"
          "    open('probe', 'w').write('ok')\n"
          "    caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
          "    return json.dumps({'net': sorted(n for _, n in socket.if_nameindex()),\n"
          "        'pid': os.getpid(), 'uid': os.getuid(), 'version': sys.version,\n"
          "        'caps': caps[0].split()[1] if caps else '', 'root': os.listdir('/'),\n"
          "        'prefix': sys.base_prefix})\n")
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group",
              "/etc/nsswitch.conf")
_DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_child_path: tuple[str, ...] = ()


def _child_sys_path() -> tuple[str, ...]:
    """``sys.path`` of the interpreter the child runs (``-I``: no user site, no cwd)."""
    try:
        out = subprocess.run([sys.executable, "-I", "-B", "-c",
                              "import sys, json; print(json.dumps(sys.path))"],
                             env={"PATH": _CLEAN_PATH}, capture_output=True, text=True,
                             timeout=20, stdin=subprocess.DEVNULL)
        return tuple(p for p in json.loads(out.stdout) if isinstance(p, str) and p.startswith("/"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()


def view_paths(workdir: str) -> list[tuple[str, str, str]]:
    """What the program's filesystem view holds, parents first: ("dir" | "file" | "dev" |
    "rw", path, "") binds and ("link", path, target) symlinks. Only the system's libraries,
    the interpreter, its ``sys.path``, a few ``/etc`` files, harmless devices and the temp dir."""
    wanted: list[tuple[str, str]] = []
    for path in (*_SYSTEM_DIRS, sys.base_prefix, sys.prefix, sys.exec_prefix,
                 os.path.dirname(os.path.realpath(sys.executable)), *_child_path):
        wanted += [("dir", path), ("dir", os.path.realpath(path))]
    wanted += [("file", p) for p in _ETC_FILES] + [("dev", p) for p in _DEV_FILES]
    out: list[tuple[str, str, str]] = []
    bound: list[str] = []
    for kind, path in sorted(set(wanted), key=lambda kp: (kp[1].count("/"), kp[1])):
        if not os.path.lexists(path) or any(path == b or path.startswith(b + "/") for b in bound):
            continue
        if os.path.islink(path):
            out.append(("link", path, os.readlink(path)))
            continue
        if kind == "dir" and not os.path.isdir(path) or kind != "dir" and os.path.isdir(path):
            continue
        out.append((kind, path, ""))
        if kind == "dir":
            bound.append(path)
    return out + ([("rw", workdir, "")] if workdir else [])


def bwrap_prefix(bwrap: str) -> tuple[str, ...]:
    """bubblewrap's command line for the same view (the temp dir is added per run):
    every namespace, no capability, ``/proc`` and ``/dev`` of its own, dies with llmnet."""
    args = [bwrap, "--die-with-parent", "--unshare-all", "--new-session", "--cap-drop", "ALL"]
    if os.geteuid() == 0:
        args += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    for kind, path, target in view_paths(""):
        if kind == "link":
            args += ["--symlink", target, path]
        elif kind in ("dir", "file"):
            args += ["--ro-bind", path, path]
    return (*args, "--proc", "/proc", "--dev", "/dev")


def _has_pdeathsig(setpriv: str) -> bool:
    """util-linux's setpriv has ``--pdeathsig`` from 2.33 on."""
    try:
        out = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--pdeathsig" in out.stdout


def _candidates() -> list[Isolation]:
    """Strongest first: as root, ``unshare`` with the worker as ``nobody``; bubblewrap when
    installed; ``unshare`` in a user namespace; namespaces without a filesystem view."""
    unshare, setpriv, bwrap = shutil.which("unshare"), shutil.which("setpriv"), shutil.which("bwrap")
    death = [setpriv, "--pdeathsig", "KILL"] if setpriv and _has_pdeathsig(setpriv) else []
    ns = ["--mount", "--net", "--pid", "--fork", "--kill-child", "--"]
    found = []
    if unshare and os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("nobody")
            uid, gid = entry.pw_uid, entry.pw_gid
        except KeyError:
            uid = gid = 65534
        found.append(Isolation(True, True, f"nobody ({uid})", (), (*death, unshare, *ns),
                               uid, gid, True, -1, bool(death), "unshare"))
    if bwrap:
        user = "uid 65534 in a user namespace" if os.geteuid() == 0 else None
        found.append(Isolation(True, True, user, (), bwrap_prefix(bwrap), None, None, True, -1,
                               True, "bwrap"))
    if unshare:
        found.append(Isolation(True, True, "llmnet's uid as root of a user namespace", (),
                               (*death, unshare, "--user", "--map-root-user", *ns),
                               None, None, True, -1, bool(death), "unshare --user"))
        for user in ([[]] if os.geteuid() == 0 else []) + [["--user", "--map-root-user"]]:
            found.append(Isolation(True, True, None, (), (*death, unshare, *user, "--net",
                                                          "--pid", "--fork", "--kill-child", "--"),
                                   pdeathsig=bool(death)))
    return found


def find_isolation(run: Callable[..., Any]) -> Isolation:
    """The strongest isolation that really works here, tried with ``run`` (``run_sandboxed``)."""
    global _child_path
    _child_path = _child_sys_path()
    for candidate in _candidates():
        found = _probe_candidate(candidate, run)
        if found is not None:
            return found
    return NO_ISOLATION


def isolation_for(wall: str, run: Callable[..., Any]) -> Isolation | None:
    """The candidate with this ``wall`` ("unshare", "bwrap", "unshare --user"), probed; None
    when this machine cannot give it. For tests and experiments comparing walls."""
    global _child_path
    _child_path = _child_path or _child_sys_path()
    for candidate in _candidates():
        if candidate.wall == wall:
            return _probe_candidate(candidate, run)
    return None


def _probe_candidate(candidate: Isolation, run: Callable[..., Any]) -> Isolation | None:
    """Run the probe under ``candidate`` and keep what it really gives: a network namespace
    with only ``lo``, the worker as pid 2 under its own init, no capability, the same Python."""
    program = _PROBE + "print(probe())\n"
    try:
        r = run(program, ["assert True"], audit=False, timeout_s=30, cpu_s=10,
                memory_mb=1024, _iso=candidate)
    except LlmnetError:
        return None
    if not r.passed:
        return None
    try:
        seen = json.loads(r.stdout_tail.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    if seen["version"] != sys.version or seen["prefix"] != sys.base_prefix or seen["net"] != ["lo"]:
        return None
    if candidate.wall != "none" and (seen["caps"] not in ("", "0" * 16) or seen["pid"] != 2
                                     or "root" in seen["root"] and candidate.filesystem
                                     and os.path.exists("/root") and not sys.base_prefix.startswith("/root")):
        return None
    if candidate.uid is not None and seen["uid"] != candidate.uid:
        return None
    abi = _landlock_abi() if candidate.wall != "none" else 0
    return dataclasses.replace(candidate, pid_namespace=seen["pid"] in (1, 2), landlock=abi)


def _landlock_abi() -> int:
    """The Landlock ABI the kernel offers (0: none), asked without creating anything."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return max(0, int(libc.syscall(444, None, 0, 1)))
    except (OSError, AttributeError):
        return 0


def remove_stale_dirs() -> None:
    """Remove the ``llmnet-sandbox-<pid>-*`` dirs left by an llmnet process that is gone
    (killed before it could clean up); those of live processes are left alone."""
    top = tempfile.gettempdir()
    try:
        names = os.listdir(top)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if not name.startswith(DIR_PREFIX) or len(parts) < 4 or not parts[2].isdigit():
            continue
        path = os.path.join(top, name)
        try:
            created = os.lstat(path).st_mtime
            if not _is_dir(path) or _alive_since(int(parts[2]), created):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


def _is_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _alive_since(pid: int, created: float) -> bool:
    """Is ``pid`` a process that already ran when a dir was made at time ``created``?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith(b"btime"))
    except (OSError, StopIteration, ValueError):
        return False if not os.path.exists(f"/proc/{pid}") else True
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= created + 1
