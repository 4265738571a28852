"""The trusted prelude that runs inside the sandbox, before and around the untrusted program.

Never imported to run: ``llmnet.tasks.sandbox`` sends the source of ``_sandbox_wall.py``,
``_sandbox_hook.py`` and this file, followed by ``_prelude()``, to the sandboxed interpreter
as the first line of its stdin. The prelude reads its instructions (the JSON after that
line); as process 1 of fresh namespaces it builds the filesystem view, forks the worker and
waits (``_wall_init``); the worker drops every privilege (``_wall_lock``), sets the
resource limits, installs the audit hook (``_hook_arm``), runs the program and the setup,
then each test: a weak test (any snippet) runs here and reports pass or fail; an equality
test reports only the values of its calls, as tagged JSON, for the parent to compare. One
HMAC-authenticated record per step goes out on a private pipe. Standard library only.

Everything the prelude still needs once the program has run is bound to a local first, so
that monkey-patching builtins or modules cannot change what it reports.
"""


def _prelude():
    import ast
    import builtins as B
    import json
    import os
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
    type, int, bytes, len, repr, isinstance, enumerate = (B.type, B.int, B.bytes, B.len,
        B.repr, B.isinstance, B.enumerate)
    S, BE = B.str, B.BaseException
    rep, sjoin, senc = S.replace, S.join, S.encode
    write, exit_ = os.write, os._exit
    cfg = json.loads(sys.stdin.buffer.read())      # the rest of stdin, after this text
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    key, fd, wd = bytes.fromhex(cfg.pop("key")), cfg["fd"], cfg["workdir"]
    wall = cfg.get("wall")
    if wall is not None:        # process 1 of fresh namespaces: build the view, fork, lock
        if wall.get("paths"):
            _wall_view(wall)  # noqa: F821 (sent with _sandbox_wall.py)
            _wall_init()  # noqa: F821
        os.chdir(wd)
        _wall_lock(wall, wd)  # noqa: F821

    def text(x, n=300):
        try:
            s = S.__str__(x if type(x) is S else S(x))[:n]
        except BE:
            s = "<unprintable>"
        return rep(rep(rep(s, "\t", " "), "\n", " "), "\r", " ")

    def emit(*fields, raw=None):
        # raw: a JSON text (no tab, no newline), sent whole
        parts = [text(f) for f in fields] + ([] if raw is None else [raw])
        body = senc(sjoin("\t", parts), "utf-8", "backslashreplace")
        try:
            write(fd, body + b"\t" + senc(mac(key, body, "sha256").hex()) + b"\n")
        except BE:
            pass

    # -- limits (the parent enforces the wall clock and the output size)
    R = resource
    limits = [(R.RLIMIT_AS, cfg["memory_mb"] << 20), (R.RLIMIT_CPU, cfg["cpu_s"]),
              (R.RLIMIT_CORE, 0), (R.RLIMIT_FSIZE, cfg["max_file_bytes"]),
              (R.RLIMIT_NOFILE, 256)]
    if cfg.get("nproc_base") is not None:        # the uid's threads, counted by the parent
        limits.append((R.RLIMIT_NPROC, cfg["nproc_base"] + cfg["max_procs"]))
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
    def calls(srcs, i):
        out = []
        for j, c in enumerate(srcs):
            try:
                out.append(compile(c, "<test %d.%d>" % (i, j), "eval", dont_inherit=True))
            except BE as e:
                out.append(e)
        return out
    tests = [compiled(t, "<test %d>" % i, True) if type(t) is S else calls(t["calls"], i)
             for i, t in enumerate(cfg["tests"])]

    roots = {os.path.realpath(p) for p in sys.path if p} | set(sys.path) | {
        sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
        os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
        "/usr/share/zoneinfo", "/etc/localtime", "/dev/null", "/dev/urandom", "/dev/zero"}

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

    BASES = (B.bool, B.int, B.float, S, B.list, B.tuple, B.dict, B.set, B.frozenset)
    quote, getattr_, irepr, frepr = json.encoder.encode_basestring_ascii, B.getattr, \
        B.int.__repr__, B.float.__repr__
    TAGS = {B.tuple: '{"tuple":[', B.set: '{"set":[', B.frozenset: '{"frozenset":['}

    def plain(v, depth, budget):
        # the value as tagged JSON text; the parent compares it with the expected value.
        # Subclasses of plain types are read through the base type's own methods, so an
        # overridden __eq__, __iter__ or __repr__ is never asked; anything else is refused.
        budget[0] += 1
        if depth > 100 or budget[0] > 1_000_000:
            raise ValueError("result too large or too deep")
        if v is None:
            return "null"
        t = type(v)
        base = t if t in BASES else None
        for b in BASES if base is None else ():
            if isinstance(v, b):
                base = b
                break
        if base is B.bool:
            return "true" if v is True else "false"
        if base is B.int:
            return irepr(B.int.__index__(v))
        if base is B.float:
            f = B.float.__float__(v)
            return frepr(f) if f - f == 0 else \
                '{"float":"%s"}' % ("nan" if f != f else "inf" if f > 0 else "-inf")
        if base is S:
            return quote(S.__str__(v))
        if base is B.list:
            return "[" + sjoin(",", [plain(x, depth + 1, budget) for x in B.list.__iter__(v)]) + "]"
        if base in TAGS:
            return TAGS[base] + sjoin(",", [plain(x, depth + 1, budget)
                                            for x in base.__iter__(v)]) + "]}"
        if base is B.dict:
            return '{"dict":[' + sjoin(",", ["[" + plain(k, depth + 1, budget) + "," +
                                             plain(x, depth + 1, budget) + "]"
                                             for k, x in B.dict.items(v)]) + "]}"
        if getattr_(t, "__module__", "") == "numpy" and t.__name__ != "ndarray":
            return plain(v.item(), depth + 1, budget)          # a numpy scalar
        raise TypeError("not plain data: " + text(t.__name__, 60))

    def value(code, i, j, _eval=eval):
        if isinstance(code, BE):
            return "0", describe(code, "<test %d.%d>" % (i, j))[0], ""
        try:
            v = _eval(code, ns)
        except BE as e:
            return "0", describe(e, "<test %d.%d>" % (i, j))[0], ""
        try:
            out = plain(v, 0, [0])
        except BE as e:
            return "0", "NotPlainData", text(e, 120)
        return ("1", "", out) if len(out) <= cfg["max_value"] else ("0", "ResultTooLarge", "")

    stdout, stderr, clock = sys.stdout, sys.stderr, time.perf_counter
    if cfg["audit"]:
        _hook_arm(wd, roots, emit, text)  # noqa: F821 (sent with _sandbox_hook.py)
    failure = run(program, "<solution>") or run(setup, "<setup>")
    emit("P", "0" if failure else "1", *(failure or ("", "")))
    if failure is None:
        for i, code in enumerate(tests):
            if type(code) is B.list:                  # calls whose value the parent checks
                for j, c in enumerate(code):
                    ok, err, out = value(c, i, j)
                    emit("V", i, j, ok, err, raw=out if ok == "1" else text(out))
                continue
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
