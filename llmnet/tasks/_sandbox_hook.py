"""The audit hook: the sandbox's second fence, inside the untrusted interpreter.

Never imported to run: its source travels with ``_sandbox_child.py`` (see there).
``_hook_arm`` installs ``sys.addaudithook(hook)`` after the kernel wall is up and before the
program runs. It refuses what a program has no business doing (processes, signals, sockets,
writes outside the temp dir, ctypes, sub-interpreters, ...) and reports the attempt.

Every function of the hook takes what it uses as default arguments, never as closure cells
or globals: defaults are an immutable tuple whose replacement (``__defaults__``, ``__code__``)
is itself an audited event the hook refuses for its own functions, while a cell's
``cell_contents`` can be reassigned without any event. ``os.mkfifo`` and ``os.mknod``, which
CPython does not audit, are replaced by functions that only refuse (the originals are kept
nowhere a program could reach). Relative paths are resolved against the temp dir, fixed
before the program starts; changing the working directory is refused (so a thread flipping
it cannot race the path check) and so is opening a directory outside the temp dir (so a
``dir_fd``, which the ``open`` event does not show, can only point inside it).

What the hook cannot stop: a program that walks frames (``sys._getframe``, a traceback's
``tb_frame``) reaches the prelude's reporting function and key, so verdicts computed in the
child ("weak" tests) can be forged; crafted bytecode or memory access through a module loaded
before the hook; bugs in CPython. Side effects are then the kernel layers' to stop.
"""


def _hook_arm(wd, roots, emit, text):
    import builtins as B
    import os
    import posix
    import sys

    S, BE, PE, T = B.str, B.BaseException, B.PermissionError, B.type
    sstarts, ssplit, sjoin = S.startswith, S.split, S.join
    readlink, fspath = posix.readlink, os.fspath
    WFLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    wds = (wd, os.path.realpath(wd))
    roots = tuple(r for r in roots if sstarts(r, "/")) + wds
    writable = ("/dev/null", "/dev/stdout", "/dev/stderr")
    HOT = frozenset(("exec", "compile", "object.__delattr__", "builtins.id", "code.__new__",
        "sys._getframe", "marshal.loads", "os.listdir", "os.scandir", "function.__new__",
        "os.putenv", "os.unsetenv"))
    DENY = frozenset(("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
        "os.system", "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg",
        "signal.pthread_kill", "resource.setrlimit", "resource.prlimit", "gc.get_objects",
        "gc.get_referrers", "gc.get_referents", "sys._current_frames",
        "sys._current_exceptions", "os.symlink", "os.link", "socket.connect", "socket.bind",
        "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
        "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo",
        "socket.sethostname", "http.client.connect", "ftplib.connect", "smtplib.connect",
        "poplib.connect", "imaplib.open", "nntplib.connect", "telnetlib.Telnet.open",
        "urllib.Request", "webbrowser.open", "sqlite3.enable_load_extension",
        "sqlite3.load_extension", "cpython.PyInterpreterState_New", "sys.addaudithook",
        "_posixsubprocess.fork_exec", "signal.pidfd_send_signal", "os.mkfifo", "os.mknod"))
    DENY_IMPORT = frozenset(("_posixsubprocess", "_signal", "posix", "_cffi_backend", "cffi",
        "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_testcapi",
        "_testinternalcapi", "_testmultiphase"))
    # event -> (path index, dir_fd index) pairs; 9: no dir_fd argument
    PATHS = {"os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
        "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.utime": ((0, 3),),
        "os.truncate": ((0, 9),), "os.setxattr": ((0, 9),), "os.removexattr": ((0, 9),),
        "os.chflags": ((0, 9),), "os.lchflags": ((0, 9),), "os.rename": ((0, 2), (1, 3))}
    SEALED = frozenset(("__code__", "__defaults__", "__kwdefaults__"))

    # CPython does not audit mkfifo and mknod: they are replaced by functions that only
    # refuse (no original kept anywhere a program could reach it)
    private = {"_audit": sys.audit}
    exec(compile(
        "def mkfifo(path, *a, **k):\n"
        "    _audit('os.mkfifo', path)\n"
        "def mknod(path, *a, **k):\n"
        "    _audit('os.mknod', path)\n"
        "def fork_exec(*a, **k):\n"
        "    _audit('_posixsubprocess.fork_exec')\n"
        "def pidfd_send_signal(*a, **k):\n"
        "    _audit('signal.pidfd_send_signal')\n", "<llmnet sandbox>", "exec"), private)
    STUBS = tuple(f for f in private.values() if T(f) is T(_hook_arm))

    def absolute(p, dir_fd=None, T=T, S=S, BE=BE, readlink=readlink, fspath=fspath,
                 sstarts=sstarts, ssplit=ssplit, sjoin=sjoin, base=wds[1], I=B.int,
                 BY=B.bytes):
        if T(p) is I:
            p = readlink("/proc/self/fd/%d" % p)
            return p if sstarts(p, "/") else ""        # a pipe or socket, not a path
        if T(p) is not S and T(p) is not BY:
            p = fspath(p)
        if T(p) is BY:
            p = BY.decode(p, "utf-8", "surrogateescape")
        if T(p) is not S:
            return None
        if not sstarts(p, "/"):
            p = (base if dir_fd is None or dir_fd == -1
                 else readlink("/proc/self/fd/%d" % dir_fd)) + "/" + p
        parts = []
        for part in ssplit(p, "/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part != "" and part != ".":
                parts.append(part)
        return "/" + sjoin("/", parts)

    def under(p, tops, sstarts=sstarts):
        for t in tops:
            if p == t or sstarts(p, t + "/"):
                return True
        return False

    def inside(p, dir_fd=None, absolute=absolute, under=under, wds=wds, writable=writable,
               BE=BE):
        try:
            a = absolute(p, dir_fd)
        except BE:
            return False
        return a == "" or (a is not None and (under(a, wds) or a in writable))

    def readable(p, dir_fd=None, absolute=absolute, under=under, roots=roots, BE=BE):
        try:
            a = absolute(p, dir_fd)
        except BE:
            return False
        return a is not None and (a == "" or under(a, roots))

    import _stat

    def isdir(p, stat=posix.stat, S_ISDIR=_stat.S_ISDIR):
        return S_ISDIR(stat(p).st_mode)

    def verdict(event, args, DENY=DENY, DENY_IMPORT=DENY_IMPORT, PATHS=PATHS, T=T, S=S,
                inside=inside, readable=readable, absolute=absolute, wds=wds, WFLAGS=WFLAGS,
                SEALED=SEALED, sstarts=sstarts, BE=BE, len=B.len, I=B.int,
                isdir=isdir,
                GUARDED=()):
        # None: allowed; else (mark the sample blocked?, reason)
        if event in DENY:
            return True, ""
        if event == "open":
            path, mode, flags = args
            if T(path) is I:
                return None
            write = flags & WFLAGS if mode is None else (
                "w" in mode or "a" in mode or "x" in mode or "+" in mode)
            if write:
                return None if inside(path) else (True, "write outside the sandbox:")
            if not readable(path):
                return False, ""
            # no directory fd outside the temp dir: a relative path opened with dir_fd (which
            # this event does not show) then always lands inside the temp dir
            if mode is None and not inside(path):
                try:
                    return (False, "") if isdir(absolute(path)) else None
                except BE:
                    return False, ""
            return None
        if event in PATHS:
            for i, d in PATHS[event]:
                if not inside(args[i], args[d] if d < len(args) else None):
                    return True, "outside the sandbox:"
            return None
        if event == "object.__setattr__":
            if args[1] in SEALED:
                for f in GUARDED:
                    if args[0] is f:
                        return True, "the sandbox's own functions"
            return None
        if event == "os.chdir":
            try:
                return None if absolute(args[0]) in wds else (False, "")
            except BE:
                return False, ""
        if event == "import":
            return (True, "") if args[0] in DENY_IMPORT else None
        if event == "socket.__new__":
            return None if args[1] == 1 else (True, "address family %s" % args[1])
        if event == "sqlite3.connect":
            db = args[0]
            ok = db in (":memory:", "", b":memory:", b"") or (
                T(db) is S and not sstarts(db, "file:") and inside(db))
            return None if ok else (True, "database outside the sandbox:")
        if sstarts(event, "ctypes."):
            return None if event == "ctypes.dlopen" and args[0] is None else (True, "")
        return None

    def hook(event, args, HOT=HOT, verdict=verdict, reported=[0], emit=emit, text=text, T=T,
             S=S, PE=PE, types=(S, B.int, B.bytes, B.tuple)):
        if event in HOT:
            return
        v = verdict(event, args)
        if v is None:
            return
        if v[0]:
            if reported[0] < 8:
                arg = args[0] if args and T(args[0]) in types else ""
                emit("B", event, v[1] + " " + text(arg, 120))
            reported[0] += 1
        raise PE("llmnet sandbox: " + event + " is not allowed")

    import _posixsubprocess
    import _signal
    import signal
    for module in (os, posix):
        for name in ("mkfifo", "mknod"):
            setattr(module, name, private[name])
    _posixsubprocess.fork_exec = private["fork_exec"]
    _signal.pidfd_send_signal = signal.pidfd_send_signal = private["pidfd_send_signal"]
    # the hook's own functions may not be rewritten (set before the hook is on: no event)
    verdict.__defaults__ = verdict.__defaults__[:-1] + (
        (hook, verdict, absolute, under, inside, readable, isdir) + STUBS,)
    sys.addaudithook(hook)
