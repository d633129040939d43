"""OS isolation of the training worker, under the static gate (defence in depth).

The worker is the only process that runs candidate code. At start, before it imports anything
heavy, it enters what the machine allows and reports what it got (``summary.json`` ``sandbox``):

* **network**: a new user + network namespace (``unshare``): no interface is up, not even
  loopback, so nothing on this machine or beyond can be reached. Without user namespaces, Landlock
  (ABI 4+) refuses every TCP bind and connect.
* **processes**: a new PID namespace whose first process is the worker: every process started
  inside ends with it. A seccomp filter then refuses new processes (threads stay allowed) in the
  worker once its candidate checker runs, and in every checker child before candidate code runs.
* **filesystem**: Landlock: reads only beneath the Python installation, the import path,
  rewardsmith's own files and system directories (of /etc only ``_ETC_READ``); writes only beneath the worker's own directory
  (``<run>/worker``) and the compilation cache; nothing in the user's home or elsewhere.
* **mounts**: a mount namespace of its own (``_private_mounts``): /tmp, /var/tmp and /run empty
  but for what the worker needs beneath them, a /dev of a few nodes, /proc of its own PID namespace,
  every other mount read-only; then no capability and not root inside (``_drop_capabilities``).
* **limits**: address space (``sandbox_memory_mb``; not with a GPU, whose driver reserves far more
  address space than it uses), file size (``sandbox_file_mb``).

``sandbox=auto`` (default) takes what is available and warns once about the rest;
``sandbox=strict`` refuses to run a worker without network and filesystem isolation;
``sandbox=off`` applies nothing (for debugging).
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import signal
import struct
import sys
from pathlib import Path
from typing import Any

ENV = "REWARDSMITH_SANDBOX"  # the policy, as JSON, from the orchestrator to the worker
MODES = ("auto", "strict", "off")
EXIT_SANDBOX = 78  # strict mode and isolation unavailable

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 38, 22
_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
# mount(2) flags
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC = 1024, 2048, 4096, 16384
_MS_PRIVATE, _MS_RELATIME, _MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
# per-mount options a user namespace may not change on a mount it did not make (kept on a remount)
_LOCKED = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC, "noatime": _MS_NOATIME,
           "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME, "strictatime": _MS_STRICTATIME}
_HIDDEN = ("/tmp", "/var/tmp", "/run")  # replaced by empty directories (what the worker needs there stays)
_DEV_NODES = ("null", "zero", "full", "random", "urandom")
_GPU_NODES = ("nvidia*", "nvidia-caps", "dri", "kfd")
_SYS = {"x86_64": {"landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
                   "clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "seccomp": 317,
                   "socket": 41, "socketpair": 53},
        "aarch64": {"landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
                    "clone": 220, "clone3": 435, "seccomp": 277, "socket": 198,
                    "socketpair": 199}}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# Landlock access rights by ABI version
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ABI1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR

_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/opt", "/proc", "/sys")
# of /etc only what the dynamic loader, libc's name and time lookups, Python and the packages read
_ETC_READ = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "zoneinfo", "passwd", "group",
             "nsswitch.conf", "host.conf", "hosts", "gai.conf", "os-release", "lsb-release", "debian_version",
             "alternatives", "fonts", "mime.types", "matplotlibrc", "python3", "python3.*", "pki/tls/certs",
             "ssl/certs", "ca-certificates.conf", "locale.alias", "locale.conf", "environment")


@dataclasses.dataclass(frozen=True)
class Policy:
    mode: str = "auto"
    write: tuple[str, ...] = ()  # directories the worker may write beneath
    read: tuple[str, ...] = ()  # extra directories it may read (a user's task files)
    memory_mb: int = 0  # address-space cap of the worker; 0: none
    file_mb: int = 4096  # largest file it may write
    folder_mb: int = 0  # what its own directory may hold (the first of ``write``), watched from outside; 0: no bound

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls, environ=os.environ) -> "Policy":
        raw = environ.get(ENV)
        if not raw:
            return cls(mode="off")
        d = json.loads(raw)
        return cls(mode=d.get("mode", "auto"), write=tuple(d.get("write", ())), read=tuple(d.get("read", ())),
                   memory_mb=int(d.get("memory_mb", 0)), file_mb=int(d.get("file_mb", 4096)),
                   folder_mb=int(d.get("folder_mb", 0)))


def writable_dirs(write_dir: str | os.PathLike, compile_cache_dir: str | None) -> tuple[str, ...]:
    """What a worker may write: beneath its own directory and the compilation cache (created here)."""
    write = [str(Path(write_dir).resolve())]
    if compile_cache_dir:
        Path(compile_cache_dir).mkdir(parents=True, exist_ok=True)
        write.append(str(Path(compile_cache_dir).resolve()))
    return tuple(write)


def sandbox_policy(settings, write_dir: str | os.PathLike, task_file: str | None = None) -> Policy:
    """The worker's OS isolation for a run's worker settings (``WorkerSettings``)."""
    read = [str(Path(task_file).resolve().parent)] if task_file else []
    return Policy(mode=settings.sandbox, write=writable_dirs(write_dir, settings.compile_cache_dir), read=tuple(read),
                  memory_mb=int(settings.sandbox_memory_mb or 0), file_mb=int(settings.sandbox_file_mb or 0),
                  folder_mb=int(getattr(settings, "sandbox_folder_mb", 0) or 0))


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _syscall(name: str, *args) -> int:
    nr = _SYS.get(platform.machine(), {}).get(name)
    if nr is None:
        return -1
    return _libc().syscall(nr, *args)


# -- namespaces ---------------------------------------------------------------------------------------

def _enter_namespaces() -> tuple[bool, bool]:
    """New user, network, PID and (where allowed) mount namespaces; the caller must fork next (the
    child is PID 1). Returns (entered, with a mount namespace). Inside, the worker's user id is its own
    unless that is root, which becomes an ordinary id (``_INNER_ID``) with no privilege of its own."""
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWPID
    mounts = _libc().unshare(flags | _CLONE_NEWNS) == 0
    if not mounts and _libc().unshare(flags) != 0:
        return False, False
    try:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid or _INNER_ID} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid or _INNER_ID} {gid} 1")
    except OSError:
        return False, False
    return True, mounts


_INNER_ID = 1000  # the worker's user and group id inside its namespace where the run's are root


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    enc = (lambda x: x.encode() if x is not None else None)
    return _libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0


def _unescape(field: str) -> str:
    """A path as /proc/self/mountinfo writes it (space, tab, newline and backslash as octal)."""
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _outermost(paths) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not _under(p, out):
            out.append(p)
    return out


def _private_mounts(keep: list[str], write: list[str], gpu: bool) -> dict[str, Any]:
    """In the worker's own mount namespace (nothing here reaches the host's): ``/tmp``, ``/var/tmp`` and
    ``/run`` become empty, except for what the worker must read or write beneath them (its own
    directory, a virtual environment under /tmp), bound back in place; ``/dev`` holds only null, zero,
    full, random, urandom (and the GPU's nodes), with a fresh ``/dev/shm``; ``/proc`` is mounted anew for
    the worker's PID namespace (no other process is visible); then every mount except the worker's
    writable directories, /proc and /dev is made read-only, so no file outside can change its mode,
    times or owner (Landlock does not cover those). Each step is best effort and reported."""
    got: dict[str, Any] = {}
    if not _mount(None, "/", None, _MS_REC | _MS_PRIVATE):
        return {"error": f"mount propagation: {os.strerror(ctypes.get_errno())}"}
    real = [os.path.realpath(p) for p in keep + write if p and os.path.exists(p)]
    hidden = [h for h in _HIDDEN if os.path.isdir(h) and not os.path.islink(h) and h not in real]
    back = _outermost(p for p in real if _under(p, hidden))
    fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in back}
    dev = [f"/dev/{n}" for n in _DEV_NODES if os.path.exists(f"/dev/{n}")]
    if gpu:
        dev += [str(p) for pat in _GPU_NODES for p in sorted(Path("/dev").glob(pat))]
    dev_fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in dev}
    try:
        got["hidden"] = [h for h in hidden if _mount("tmpfs", h, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=1m")]
        for p, fd in fds.items():
            _bind_back(fd, p)
        if _mount("tmpfs", "/dev", "tmpfs", _MS_NOSUID | _MS_NOEXEC, "mode=755,size=64m"):
            nodes = [p for p, fd in dev_fds.items() if _bind_back(fd, p)]
            os.makedirs("/dev/shm", exist_ok=True)
            _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "mode=1777,size=64m")
            for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                                 ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
                os.symlink(target, f"/dev/{name}")
            got["dev"] = [os.path.basename(p) for p in nodes]
    finally:
        for fd in [*fds.values(), *dev_fds.values()]:
            os.close(fd)
    got["proc"] = "own pid namespace" if _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC) \
        else f"host's ({os.strerror(ctypes.get_errno())})"
    writable = _outermost(os.path.realpath(w) for w in write if os.path.isdir(w))
    for w in writable:
        if w not in fds:  # a directory bound back above is a mount of its own already
            _mount(w, w, None, _MS_BIND | _MS_REC)
    done = failed = 0
    for point, options in _mount_table():
        if _under(point, ("/proc", "/dev")) or _under(point, writable) or "ro" in options:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for opt in options:
            flags |= _LOCKED.get(opt, 0)
        if _mount(None, point, None, flags):
            done += 1
        else:
            failed += 1
    got["read_only"] = f"{done} of {done + failed} mounts"
    got["read_only_count"] = [done, done + failed]
    try:
        os.chdir(os.getcwd())  # the working directory as the new mounts show it
    except OSError:
        pass
    return got


def _bind_back(fd: int, path: str) -> bool:
    """Bind what ``fd`` (opened before ``path``'s parent was covered) names back at ``path``."""
    try:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.exists(path):
                open(path, "w").close()
    except OSError:
        return False
    return _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)


def _mount_table() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of this mount namespace, each point once, in mount order."""
    out: dict[str, set[str]] = {}
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            f = line.split()
            out[_unescape(f[4])] = set(f[5].split(","))
    except (OSError, IndexError):
        return []
    return list(out.items())


def _drop_capabilities() -> bool:
    """Every capability gone (bounding, ambient, effective, permitted, inheritable): the worker can no
    longer mount, unmount what covers the host's files, or change its limits upward."""
    libc = _libc()
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        return False
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16) == 0
    except (OSError, ValueError):
        pass
    return True


def _become_namespace_init() -> None:
    """Fork: the parent waits and exits as the child did; the child (PID 1 of the new namespace)
    returns and dies with the parent. When PID 1 ends, the kernel ends every process inside."""
    pid = os.fork()
    if pid == 0:
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: os.kill(pid, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


# -- Landlock -----------------------------------------------------------------------------------------

def landlock_abi() -> int:
    r = _syscall("landlock_create_ruleset", None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, r)


def _landlock(read: list[str], listed: list[str], write: list[str], deny_tcp: bool) -> dict[str, Any] | None:
    abi = landlock_abi()
    if abi < 1:
        return None
    fs = _FS_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | \
        (_FS_IOCTL_DEV if abi >= 5 else 0)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if (abi >= 4 and deny_tcp) else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    if abi >= 6:
        attr, size = struct.pack("QQQ", fs, net, scoped), 24
    elif abi >= 4:
        attr, size = struct.pack("QQ", fs, net), 16
    else:
        attr, size = struct.pack("Q", fs), 8
    buf = ctypes.create_string_buffer(attr, size)
    ruleset = _syscall("landlock_create_ruleset", buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return None
    granted: dict[str, list[str]] = {"read": [], "write": []}
    try:
        def allow(path: str, access: int, kind: str) -> None:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return
            try:
                rights = access & fs
                if not os.path.isdir(path):
                    rights &= _FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                if _syscall("landlock_add_rule", ctypes.c_int(ruleset), ctypes.c_int(1), rule,
                            ctypes.c_uint32(0)) == 0:
                    granted[kind].append(path)
            finally:
                os.close(fd)

        for p in read:
            allow(p, _READ, "read")
        for p in listed:
            allow(p, _FS_READ_DIR, "read")
        allow("/dev", _READ | _FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV, "write")  # null, urandom, GPUs
        for p in write:
            allow(p, fs, "write")
        if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return None
        if _syscall("landlock_restrict_self", ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return None
    finally:
        os.close(ruleset)
    return {"abi": abi, "tcp": bool(net), "scoped": bool(scoped), **granted}


def read_paths(extra: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """What the worker must read: (directories read beneath, directories only listed). Read:
    system directories, the Python installation, the import path, rewardsmith's own folders and
    ``extra``; a source checkout on the import path is only listed, so its other files (other runs'
    outputs, .git) stay unreadable."""
    out: list[str] = [p for p in _SYSTEM_READ if os.path.isdir(p)]
    out += [str(p) for pat in _ETC_READ for p in sorted(Path("/etc").glob(pat))]
    out += [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    listed: list[str] = []
    mine = _package_dirs()
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(os.path.realpath(m).startswith(real + os.sep) for m in mine) and "site-packages" not in real:
            listed.append(real)
        else:
            out.append(real)
    out += mine + [p for p in extra if p and os.path.exists(p)]
    task_path = os.environ.get("REWARDSMITH_TASK_PATH", "")
    out += [p for p in task_path.split(os.pathsep) if p and os.path.isdir(p)]
    return list(dict.fromkeys(out)), [p for p in dict.fromkeys(listed) if p not in out]


def _package_dirs() -> list[str]:
    here = Path(__file__).resolve().parents[1]  # the rewardsmith package
    dirs = [str(here)]
    root = here.parent
    for sub in ("conf", "envs", "prompts"):
        if (root / sub).is_dir() and (root / "pyproject.toml").is_file():
            dirs.append(str(root / sub))
        # where the import system finds them (an editable install maps them to its source tree)
        spec = importlib.util.find_spec(f"rewardsmith.{sub}")
        dirs += [os.path.realpath(d) for d in ((spec and spec.submodule_search_locations) or [])]
    return list(dict.fromkeys(dirs))


# -- seccomp: no new processes ------------------------------------------------------------------------

def forbid_new_processes() -> bool:
    """From now on this process and every one of its threads (those already running too: the filter
    is installed with SECCOMP_FILTER_FLAG_TSYNC) may start threads but no process (fork, vfork,
    clone without CLONE_THREAD: EPERM; clone3: ENOSYS, so libc falls back to clone) and open no unix
    socket (``socket``/``socketpair`` with AF_UNIX: EPERM; a socket file outside, docker's or an
    ssh agent's, cannot be reached; the worker talks to the run through its pipes). A system call of
    another architecture (a 32-bit ``int 0x80``) or the x32 ABI kills the process."""
    arch = platform.machine()
    nrs = _SYS.get(arch)
    if not nrs or arch not in _AUDIT_ARCH:
        return False
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38, 0x80000000
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH[arch]), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if arch == "x86_64":  # x32 numbers carry bit 30 on the same architecture
        prog += [(jset, 0, 1, 0x40000000), (ret, 0, 0, kill)]
    for call in ("socket", "socketpair"):  # no unix socket (pathname or abstract): EPERM; other families pass
        prog += [(jeq, 0, 4, nrs[call]), (ld, 0, 0, 16), (jeq, 0, 1, 1), (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    denied = [nrs[n] for n in ("fork", "vfork") if n in nrs]
    # layout: [checks for denied...] [clone3] [clone] [allow] [eperm] [enosys] [clone flag check...]
    body: list[tuple[int, int, int, int]] = []
    n_checks = len(denied) + 2
    for i, nr in enumerate(denied):
        to_eperm = n_checks - i - 1 + 1  # skip the remaining checks and the allow
        body.append((jeq, to_eperm, 0, nr))
    body.append((jeq, 2 + 1, 0, nrs["clone3"]))  # -> enosys
    body.append((jeq, 3, 0, nrs["clone"]))  # -> flag check
    body += [(ret, 0, 0, allow), (ret, 0, 0, eperm), (ret, 0, 0, enosys)]
    body += [(ld, 0, 0, 16), (jset, 0, 1, 0x00010000), (ret, 0, 0, allow), (ret, 0, 0, eperm)]
    prog += body
    arr = (ctypes.c_ubyte * (8 * len(prog)))()
    for i, (code, jt, jf, k) in enumerate(prog):
        struct.pack_into("=HBBI", arr, 8 * i, code, jt, jf, k)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(arr))
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    # seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC): every thread, not only this one
    if libc.syscall(ctypes.c_long(nrs["seccomp"]), ctypes.c_long(1), ctypes.c_long(1), ctypes.byref(fprog)) == 0:
        return True
    return False


# -- the worker's entry -------------------------------------------------------------------------------

def _limits(policy: Policy, gpu: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if policy.memory_mb > 0 and not gpu:
        cap = policy.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        out["memory_mb"] = policy.memory_mb
    else:
        out["memory_mb"] = None
    if policy.file_mb > 0:
        cap = policy.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        out["file_mb"] = policy.file_mb
    return out


def physical_memory_mb() -> int:
    """The machine's memory in MB (the default address-space cap of the worker); 0 if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _has_gpu() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/kfd").exists()


def enter(policy: Policy) -> dict[str, Any]:
    """Isolate this process as far as ``policy`` and the machine allow; returns what was applied.
    Call first thing in the worker (single-threaded, nothing heavy imported). With namespaces the
    process forks here and only the child returns."""
    report: dict[str, Any] = {"mode": policy.mode, "network": "none", "filesystem": "none",
                              "processes": "none", "limits": {}}
    if policy.mode == "off":
        return report
    gpu = _has_gpu()
    entered, mounts = _enter_namespaces()
    read, listed = read_paths(policy.read)
    if entered:
        _become_namespace_init()
        report["network"] = "namespace: no interfaces"
        report["processes"] = "pid namespace (all end with the worker)"
        report["mounts"] = _private_mounts(read + listed, list(policy.write), gpu) if mounts else \
            {"error": "no mount namespace"}
        report["user"] = f"uid {os.getuid()} inside" + (
            ", capabilities dropped" if _drop_capabilities() else ", capabilities kept (capset failed)")
    ll = _landlock(read, listed, list(policy.write), deny_tcp=report["network"] == "none")
    if ll is not None:
        report["filesystem"] = f"landlock (ABI {ll['abi']}): writes only in {', '.join(policy.write) or 'nothing'}"
        if ll["tcp"]:
            report["network"] = "landlock: no TCP"
        if ll["scoped"]:
            report["signals"] = "landlock: none to processes outside"
    report["limits"] = _limits(policy, gpu)
    report["gpu"] = gpu
    missing = [k for k in ("network", "filesystem") if report[k] == "none"]
    report["missing"] = missing
    report["partial"] = _partial(report)
    if policy.mode == "strict" and missing:
        print(json.dumps({"event": "sandbox_refused", "missing": missing}), flush=True)
        print(f"sandbox=strict: no {' and no '.join(missing)} isolation on this machine", file=sys.stderr, flush=True)
        os._exit(EXIT_SANDBOX)
    return report


def _partial(report: dict[str, Any]) -> list[str]:
    """The layers beneath network and files that this machine gave only in part (said once per run)."""
    out = []
    mounts = report.get("mounts")
    if mounts is None:
        return out
    if "error" in mounts:
        out.append(f"no private mounts ({mounts['error']})")
    else:
        if not str(mounts.get("proc", "")).startswith("own"):
            out.append(f"/proc not private: {mounts.get('proc')}")
        done, total = mounts.get("read_only_count", (0, 0))
        if done < total:
            out.append(f"{total - done} of {total} mounts not read-only")
    if "capabilities kept" in str(report.get("user", "")):
        out.append("capabilities kept")
    return out


def probe() -> dict[str, Any]:
    """What this machine allows, without applying it (from a throw-away child process)."""
    import subprocess

    from rewardsmith.isolation.child import importable

    code = ("import json, sys; from rewardsmith.isolation import sandbox; "
            "print(json.dumps(sandbox.enter(sandbox.Policy(mode='auto'))))")
    env = importable(os.environ)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return {"mode": "auto", "network": "none", "filesystem": "none", "processes": "none", "limits": {}}
