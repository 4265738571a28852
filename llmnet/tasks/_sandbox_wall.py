"""The kernel wall around a sandboxed program: its own filesystem view, no capabilities,
Landlock, and an init process that takes everything with it when it goes.

Never imported to run: ``llmnet.tasks.sandbox`` sends this file's source, followed by
``_sandbox_child.py``'s, to a fresh interpreter started by ``unshare`` in new mount,
network and pid namespaces, where it is process 1 and (still) privileged inside them.
Standard library only (``ctypes`` for the system calls Python does not wrap).

``_wall_view`` (process 1, privileged): mounts a small tmpfs as the new root and binds
into it, read-only, only what the interpreter needs (``/usr``, the libraries, the
interpreter's prefixes and ``sys.path``, a few ``/etc`` files, ``/dev/null`` and kin), a
fresh ``/proc`` of the new pid namespace, and the program's temp dir, read-write; then
``pivot_root`` into it and detaches the old root, so nothing else on the machine (``/root``,
homes, caches, other processes' ``/proc``) exists for the program.

``_wall_init`` (process 1): forks the worker and waits; when it returns, process 1 exits
and the kernel kills whatever is left in the namespace. ``unshare --kill-child`` and the
parent-death signal set by ``setpriv --pdeathsig`` make the chain die with llmnet.

``_wall_lock`` (the worker, before any untrusted code): empties the capability bounding
set, locks the secure bits, switches to ``nobody`` (when llmnet runs as real root) and
clears every capability, sets ``no_new_privs``, then, where the kernel has Landlock,
restricts itself to reading the view and writing its temp dir, denies every TCP bind and
connect, and scopes signals and abstract Unix sockets to its own domain.
"""


def _wall_libc():
    import ctypes
    import os
    libc = ctypes.CDLL(None, use_errno=True)

    def check(ret, what):
        if ret == -1 or (ret != 0 and what.startswith("mount")):
            err = ctypes.get_errno()
            raise OSError(err, "llmnet sandbox: %s: %s" % (what, os.strerror(err)))
        return ret
    return ctypes, libc, check


def _wall_view(w):
    import os
    ctypes, libc, check = _wall_libc()
    RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18

    def enc(s):
        return None if s is None else s.encode("utf-8", "surrogateescape")

    def mount(src, dst, fstype, flags, data=None):
        check(libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)),
              "mount %s on %s" % (src, dst))

    def locked(path):
        # a remount must keep the flags the mount already has (in a user namespace they
        # are locked): nosuid, nodev, noexec, noatime, nodiratime, relatime
        f = os.statvfs(path).f_flag
        return (f & (NOSUID | NODEV | NOEXEC | 1024 | 2048)) | ((1 << 21) if f & 4096 else 0)

    def bind(src, dst, writable, extra=NOSUID):
        mount(src, dst, None, BIND)
        mount(None, dst, None, REMOUNT | BIND | extra | locked(dst) | (0 if writable else RDONLY))

    root = w["root"]
    mount(None, "/", None, REC | PRIVATE)
    mount("tmpfs", root, "tmpfs", NOSUID | NODEV, "mode=0755,size=4m")
    for kind, path, arg in w["paths"]:         # sorted by the parent: parents first
        dst = root + path
        if kind == "link":
            os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
            if not os.path.lexists(dst):
                os.symlink(arg, dst)
            continue
        if kind in ("dir", "rw"):
            os.makedirs(dst, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
            if not os.path.exists(dst):
                os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
        bind(path, dst, kind == "rw", NOSUID | (NODEV if kind != "dev" else 0))
    os.makedirs(root + "/dev", 0o755, exist_ok=True)
    for name, target in (("fd", ""), ("stdin", "/0"), ("stdout", "/1"), ("stderr", "/2")):
        if not os.path.lexists(root + "/dev/" + name):
            os.symlink("/proc/self/fd" + target, root + "/dev/" + name)
    os.makedirs(root + "/proc", 0o555, exist_ok=True)
    try:
        mount("proc", root + "/proc", "proc", NOSUID | NODEV | NOEXEC)
        proc = True
    except OSError:                            # e.g. a user namespace under a masked /proc
        proc = False
    os.chdir(root)
    check(libc.syscall(w["pivot_root_nr"], b".", b"."), "pivot_root")
    check(libc.umount2(b".", 2), "umount the old root")          # MNT_DETACH
    os.chdir("/")
    mount(None, "/", None, REMOUNT | BIND | RDONLY | NOSUID | NODEV | locked("/"))
    return proc


def _wall_init():
    """Fork the worker; in process 1, close everything, reap, and exit with the worker's
    status (128 + signal when it was killed). Returns only in the worker."""
    import os
    import signal
    pid = os.fork()
    if pid == 0:
        return
    _, libc, _ = _wall_libc()
    libc.prctl(4, 0, 0, 0, 0)                  # PR_SET_DUMPABLE 0: the worker cannot ptrace us
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    os.closerange(3, 1 << 16)
    code = 125
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            break
    os._exit(code)


def _wall_lock(w, workdir):
    """Drop every privilege of the worker; then Landlock where the kernel has it.
    Raises (the sample is an error, never run unconfined) when a step fails."""
    import ctypes as C
    import os
    _, libc, check = _wall_libc()
    check(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")             # PR_SET_NO_NEW_PRIVS
    for cap in range(64):
        if libc.prctl(24, cap, 0, 0, 0) != 0:                      # PR_CAPBSET_DROP
            break
    # SECBIT_NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE and their locks
    libc.prctl(28, 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x80 | 0x100, 0, 0, 0)
    if w.get("uid") is not None:
        os.setgroups([])
        os.setresgid(w["gid"], w["gid"], w["gid"])
        os.setresuid(w["uid"], w["uid"], w["uid"])
    header = (C.c_uint32 * 2)(0x20080522, 0)
    data = (C.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")
    check(libc.capget(header, data), "capget")
    if any(data):
        raise OSError("llmnet sandbox: capabilities left after the drop")
    abi = w.get("landlock", 0)
    abi = _wall_landlock_abi() if abi < 0 else abi      # -1: whatever the kernel has
    if abi >= 1:
        _wall_landlock(abi, workdir, C, libc, check)


def _wall_landlock(abi, workdir, C, libc, check):
    import os
    import struct
    NR = {"create": 444, "add": 445, "restrict": 446}      # the same on every architecture
    fs = (1 << 13) - 1                                      # ABI 1: execute .. make_sym
    fs |= (1 << 13) if abi >= 2 else 0                      # refer
    fs |= (1 << 14) if abi >= 3 else 0                      # truncate
    fs |= (1 << 15) if abi >= 5 else 0                      # ioctl_dev
    net = 3 if abi >= 4 else 0                              # bind_tcp, connect_tcp
    scoped = 3 if abi >= 6 else 0                           # abstract unix sockets, signals
    attr = struct.pack("=QQQ", fs, net, scoped)[:8 if abi < 4 else 16 if abi < 6 else 24]
    buf = C.create_string_buffer(attr, len(attr))
    ruleset = check(libc.syscall(NR["create"], buf, C.c_size_t(len(attr)), 0), "landlock ruleset")
    read = 1 | 4 | 8                                        # execute, read_file, read_dir
    file_rw = 1 | 2 | 4 | ((1 << 14) if abi >= 3 else 0)
    try:
        for path, rights in (("/", read), (workdir, fs & ~(64 | 2048)),   # no char/block devices
                             ("/dev/null", file_rw), ("/dev/zero", file_rw), ("/dev/full", file_rw)):
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not os.path.isdir(path):
                    rights &= file_rw
                rule = C.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                check(libc.syscall(NR["add"], ruleset, 1, rule, 0), "landlock rule " + path)
            finally:
                os.close(fd)
        check(libc.syscall(NR["restrict"], ruleset, 0), "landlock restrict")
    finally:
        os.close(ruleset)


def _wall_landlock_abi():
    """The Landlock ABI version this kernel offers (0: none)."""
    _, libc, _ = _wall_libc()
    v = libc.syscall(444, None, 0, 1)           # LANDLOCK_CREATE_RULESET_VERSION
    return v if v > 0 else 0
