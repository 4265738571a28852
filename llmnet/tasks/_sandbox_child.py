"""The trusted prelude that runs inside the sandbox, before and around the untrusted program.

Never imported to run: ``llmnet.tasks.sandbox`` reads this file's source text and sends it to
the sandboxed interpreter as the first line of its stdin, followed by ``_prelude()``;
the prelude then reads its instructions (the JSON after that line), sets the resource
limits, installs the audit hook, runs the program, the setup and each test, and reports
one HMAC-authenticated record per step on a private pipe. So this module must stay
self-contained: standard library only, imported inside ``_prelude``.

Everything the prelude still needs once the program has run is bound to a local first
(default arguments), so that monkey-patching builtins or modules cannot change what it
reports.
"""


def _prelude():
    import _posixsubprocess
    import _signal
    import ast
    import builtins as B
    import json
    import os
    import posix
    import resource
    import signal
    import sys
    import time
    import types
    try:
        from _hashlib import hmac_digest as mac
        from _hashlib import openssl_sha256 as sha256
    except ImportError:
        from hashlib import sha256
        from hmac import digest as mac
    # everything used after the program has run is a local, out of reach of monkey-patching
    type, int, bytes, len, any, repr, isinstance, enumerate = (B.type, B.int, B.bytes, B.len,
        B.any, B.repr, B.isinstance, B.enumerate)
    S, BE, PE = B.str, B.BaseException, B.PermissionError
    rep, sjoin, senc, ssplit, sstarts = S.replace, S.join, S.encode, S.split, S.startswith
    write, exit_, getcwd, readlink, fspath = os.write, os._exit, posix.getcwd, posix.readlink, os.fspath
    WFLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    cfg = json.loads(sys.stdin.buffer.read())      # the rest of stdin, after this text
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    key, fd, wd = bytes.fromhex(cfg.pop("key")), cfg["fd"], cfg["workdir"]

    def text(x, n=300):
        try:
            s = S.__str__(x if type(x) is S else S(x))[:n]
        except BE:
            s = "<unprintable>"
        return rep(rep(rep(s, "\t", " "), "\n", " "), "\r", " ")

    def emit(*fields):
        body = senc(sjoin("\t", [text(f) for f in fields]), "utf-8", "backslashreplace")
        try:
            write(fd, body + b"\t" + senc(mac(key, body, "sha256").hex()) + b"\n")
        except BE:
            pass

    # -- limits (the parent enforces the wall clock and the output size)
    R = resource
    limits = [(R.RLIMIT_AS, cfg["memory_mb"] << 20), (R.RLIMIT_CPU, cfg["cpu_s"]),
              (R.RLIMIT_CORE, 0), (R.RLIMIT_FSIZE, cfg["max_file_bytes"]),
              (R.RLIMIT_NOFILE, 256)]
    uid = os.getuid()
    if uid != 0 and os.path.isdir("/proc"):     # RLIMIT_NPROC counts all the uid's threads
        mine = 0
        for p in os.listdir("/proc"):
            try:
                if p.isdigit() and os.stat("/proc/" + p).st_uid == uid:
                    mine += len(os.listdir("/proc/" + p + "/task"))
            except OSError:
                pass
        limits.append((R.RLIMIT_NPROC, mine + cfg["max_procs"]))
    for which, soft in limits:
        cur = R.getrlimit(which)[1]
        hard = soft + 1 if which == R.RLIMIT_CPU else soft
        if cur != R.RLIM_INFINITY:
            soft, hard = min(soft, cur), min(hard, cur)
        R.setrlimit(which, (soft, hard))
    signal.signal(signal.SIGXCPU, lambda *a: exit_(128 + signal.SIGXCPU))
    signal.signal(signal.SIGALRM, lambda *a: exit_(124))
    signal.alarm(cfg["backstop_s"])

    # -- compile everything before untrusted code can patch ast or compile
    def prepare(src, name):
        tree = ast.parse(src, name)
        def cap(node):
            return ast.Call(ast.Name("__llmnet_capture__", ast.Load()), [node], [])
        for node in ast.walk(tree):
            t = getattr(node, "test", None)
            if isinstance(node, ast.Assert) and isinstance(t, ast.Compare) \
                    and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
                t.left = cap(t.left)
        for node in tree.body:
            if isinstance(node, ast.Expr):
                node.value = cap(node.value)
        return compile(ast.fix_missing_locations(tree), name, "exec", dont_inherit=True)

    def compiled(src, name, capture):
        try:
            return prepare(src, name) if capture else compile(src, name, "exec", dont_inherit=True)
        except BE as e:
            return e
    program = compiled(cfg["program"], "<solution>", False)
    setup = compiled(cfg["setup"], "<setup>", False)
    tests = [compiled(t, "<test %d>" % i, True) for i, t in enumerate(cfg["tests"])]

    # -- the audit hook
    wds = (wd, os.path.realpath(wd))
    roots = {os.path.realpath(p) for p in sys.path if p} | set(sys.path) | {
        sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
        os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
        "/usr/share/zoneinfo", "/etc/localtime", "/dev/null", "/dev/urandom", "/dev/zero"}
    roots = tuple(r for r in roots if r.startswith("/")) + wds
    writable = ("/dev/null", "/dev/stdout", "/dev/stderr")
    HOT = frozenset(("exec", "compile", "object.__getattr__", "object.__setattr__",
        "object.__delattr__", "builtins.id", "code.__new__", "sys._getframe", "marshal.loads",
        "os.listdir", "os.scandir", "function.__new__", "os.putenv", "os.unsetenv", "os.chdir"))
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
        "sqlite3.load_extension", "cpython.PyInterpreterState_New"))
    DENY_IMPORT = frozenset(("_posixsubprocess", "_signal", "posix", "_cffi_backend", "cffi",
        "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_testcapi",
        "_testinternalcapi", "_testmultiphase"))
    PATHS = {"os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
        "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.utime": ((0, 3),),
        "os.truncate": ((0, 9),), "os.setxattr": ((0, 9),), "os.removexattr": ((0, 9),),
        "os.chflags": ((0, 9),), "os.lchflags": ((0, 9),), "os.rename": ((0, 2), (1, 3))}

    def absolute(p, dir_fd=None):
        if type(p) is int:
            p = readlink("/proc/self/fd/%d" % p)
            return p if sstarts(p, "/") else ""        # a pipe or socket, not a path
        if type(p) is not S and type(p) is not bytes:
            p = fspath(p)
        if type(p) is bytes:
            p = bytes.decode(p, "utf-8", "surrogateescape")
        if type(p) is not S:
            return None
        if not sstarts(p, "/"):
            base = getcwd() if dir_fd in (None, -1) else readlink("/proc/self/fd/%d" % dir_fd)
            p = base + "/" + p
        parts = []
        for part in ssplit(p, "/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part != "" and part != ".":
                parts.append(part)
        return "/" + sjoin("/", parts)

    def under(p, tops):
        return any(p == t or sstarts(p, t + "/") for t in tops)

    def inside(p, dir_fd=None):
        try:
            a = absolute(p, dir_fd)
        except BE:
            return False
        return a == "" or (a is not None and (under(a, wds) or a in writable))

    def verdict(event, args):
        # None: allowed; else (mark the sample blocked?, reason)
        if event in DENY:
            return True, ""
        if event == "open":
            path, mode, flags = args
            if type(path) is int:
                return None
            w = flags & WFLAGS if mode is None else any(c in mode for c in "wax+")
            if w:
                return None if inside(path) else (True, "write outside the sandbox:")
            try:
                a = absolute(path)
            except BE:
                a = None
            return None if a is not None and (a == "" or under(a, roots)) else (False, "")
        if event in PATHS:
            for i, d in PATHS[event]:
                if not inside(args[i], args[d] if d < len(args) else None):
                    return True, "outside the sandbox:"
            return None
        if event == "import":
            return (True, "") if args[0] in DENY_IMPORT else None
        if event == "socket.__new__":
            return None if args[1] == 1 else (True, "address family %s" % args[1])
        if event == "sqlite3.connect":
            db = args[0]
            ok = db in (":memory:", "", b":memory:", b"") or (
                type(db) is S and not sstarts(db, "file:") and inside(db))
            return None if ok else (True, "database outside the sandbox:")
        if sstarts(event, "ctypes."):
            return None if event == "ctypes.dlopen" and args[0] is None else (True, "")
        return None

    reported = [0]

    def hook(event, args):
        if event in HOT:
            return
        v = verdict(event, args)
        if v is None:
            return
        if v[0]:
            if reported[0] < 8:
                arg = args[0] if args and type(args[0]) in (S, int, bytes, B.tuple) else ""
                emit("B", event, v[1] + " " + text(arg, 120))
            reported[0] += 1
        raise PE("llmnet sandbox: " + event + " is not allowed")

    def stub(name):
        def refuse(*a, **k):
            hook(name, ())
        return refuse

    # -- run
    solution = types.ModuleType("solution")
    sys.modules["solution"] = solution
    ns = solution.__dict__
    box = [None, 0]                       # the running digest of the current test's values

    def capture(v):
        try:
            r = S.__str__(repr(v))
        except BE:
            r = "<unrepresentable>"
        if box[0] is not None:
            box[0].update(senc(r[:1 << 20] + "|%d\x00" % len(r), "utf-8", "backslashreplace"))
            box[1] += 1
        return v

    def describe(e, where):
        name = text(type(e).__name__, 60)
        line = ""
        try:
            tb = e.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == where:
                    line = " (line %d)" % tb.tb_lineno
                tb = tb.tb_next
        except BE:
            pass
        return name, text(name + line + ": " + text(e))

    def run(code, where, _exec=exec):
        if isinstance(code, BE):
            return describe(code, where)
        try:
            _exec(code, ns)
        except BE as e:
            return describe(e, where)
        return None

    stdout, stderr, clock = sys.stdout, sys.stderr, time.perf_counter
    if cfg["audit"]:
        DENY |= {"_posixsubprocess.fork_exec", "signal.pidfd_send_signal"}
        _posixsubprocess.fork_exec = stub("_posixsubprocess.fork_exec")
        _signal.pidfd_send_signal = signal.pidfd_send_signal = stub("signal.pidfd_send_signal")
        sys.addaudithook(hook)
    failure = run(program, "<solution>") or run(setup, "<setup>")
    emit("P", "0" if failure else "1", *(failure or ("", "")))
    if failure is None:
        for i, code in enumerate(tests):
            box[0], box[1] = sha256(), 0
            ns["__llmnet_capture__"] = capture
            t0 = clock()
            bad = run(code, "<test %d>" % i) or ("", "")
            ms = int((clock() - t0) * 1000)
            out = box[0].hexdigest()[:16] if box[1] else ""
            box[0] = None
            emit("T", i, "0" if bad[0] or bad[1] else "1", bad[0], out, ms, bad[1])
    for f in (stdout, stderr):
        try:
            f.flush()
        except BE:
            pass
    emit("D")
    exit_(0)
