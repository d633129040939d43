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
  rewardsmith's own files and system directories; writes only beneath the worker's own directory
  (``<run>/worker``) and the compilation cache; nothing in the user's home or elsewhere.
* **limits**: address space (``sandbox_memory_mb``; not with a GPU, whose driver reserves far more
  address space than it uses), file size (``sandbox_file_mb``).

``sandbox=auto`` (default) takes what is available and warns once about the rest;
``sandbox=strict`` refuses to run a worker without network and filesystem isolation;
``sandbox=off`` applies nothing (for debugging).
"""

from __future__ import annotations

import ctypes
import dataclasses
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

_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 38, 22
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

_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys", "/run")


@dataclasses.dataclass(frozen=True)
class Policy:
    mode: str = "auto"
    write: tuple[str, ...] = ()  # directories the worker may write beneath
    read: tuple[str, ...] = ()  # extra directories it may read (a user's task files)
    memory_mb: int = 0  # address-space cap of the worker; 0: none
    file_mb: int = 4096  # largest file it may write

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls, environ=os.environ) -> "Policy":
        raw = environ.get(ENV)
        if not raw:
            return cls(mode="off")
        d = json.loads(raw)
        return cls(mode=d.get("mode", "auto"), write=tuple(d.get("write", ())), read=tuple(d.get("read", ())),
                   memory_mb=int(d.get("memory_mb", 0)), file_mb=int(d.get("file_mb", 4096)))


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _syscall(name: str, *args) -> int:
    nr = _SYS.get(platform.machine(), {}).get(name)
    if nr is None:
        return -1
    return _libc().syscall(nr, *args)


# -- namespaces ---------------------------------------------------------------------------------------

def _enter_namespaces() -> bool:
    """New user, network and PID namespaces; the caller must fork next (the child is PID 1)."""
    uid, gid = os.getuid(), os.getgid()
    if _libc().unshare(_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWPID) != 0:
        return False
    try:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    except OSError:
        return False
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
    return dirs


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
    if _enter_namespaces():
        _become_namespace_init()
        report["network"] = "namespace: no interfaces"
        report["processes"] = "pid namespace (all end with the worker)"
    ll = _landlock(*read_paths(policy.read), list(policy.write), deny_tcp=report["network"] == "none")
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
    if policy.mode == "strict" and missing:
        print(json.dumps({"event": "sandbox_refused", "missing": missing}), flush=True)
        print(f"sandbox=strict: no {' and no '.join(missing)} isolation on this machine", file=sys.stderr, flush=True)
        os._exit(EXIT_SANDBOX)
    return report


def probe() -> dict[str, Any]:
    """What this machine allows, without applying it (from a throw-away child process)."""
    import subprocess

    code = ("import json, sys; from rewardsmith.train import sandbox; "
            "print(json.dumps(sandbox.enter(sandbox.Policy(mode='auto'))))")
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return {"mode": "auto", "network": "none", "filesystem": "none", "processes": "none", "limits": {}}
