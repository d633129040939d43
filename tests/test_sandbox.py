"""The worker's OS sandbox on its own: the static gate and the restricted builtins switched off by a
test-only hook, hostile candidates run in the worker and its checker, and nothing reaches outside."""

import json
import socket
import threading
from pathlib import Path

import pytest

from rewardsmith.evolve import loop
from rewardsmith.evolve.loop import run
from rewardsmith.propose.base import Proposal, Proposer
from rewardsmith.tasks import get_task
from rewardsmith.isolation import sandbox
from rewardsmith.validate.load import UNGUARDED_TEST_HOOK

from conftest import tiny_cfg

REWARD = '''
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    r = jnp.cos(next_state.theta)
    return r, {"upright": r}
'''

# acts at load time: in the checker's child process first, or (worker_only) only in the training
# worker itself, where the trainer is loaded
TEMPLATE = '''import sys


def _act():
{action}


if {everywhere} or "rewardsmith.train.population" in sys.modules:
    _act()
''' + REWARD

SLEEP = "97.25"  # a sleep no other process on the machine runs


def payloads(outside: Path, secret: Path, port: int) -> dict[str, str]:
    actions = {
        "write outside": f"    open({str(outside)!r}, 'w').write('escaped')",
        "read outside": f"    print(open({str(secret)!r}).read())",
        "connect": f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'hi')",
        "spawn loop": f"    import subprocess\n    for _ in range(20):\n        subprocess.Popen(['sleep', '{SLEEP}'])",
        "memory": "    x = bytearray(40 * 1024 ** 3)",
    }
    out = {}
    for name, action in actions.items():
        for where, everywhere in (("checker", "True"), ("worker", "False")):
            out[f"{name} ({where})"] = TEMPLATE.replace("{action}", action).replace("{everywhere}", everywhere)
    return out


class _Fixed(Proposer):
    label, origin = "fixed test proposer", "test:fixed"

    def __init__(self, sources):
        self.sources = sources

    def propose(self, ctx):
        out, self.sources = [Proposal(source=s) for s in self.sources], []
        return out


def _sleepers() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", SLEEP.encode()]:
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def available():
    got = sandbox.probe()
    if got.get("missing"):
        pytest.skip(f"this machine gives no {got['missing']} isolation")
    return got


def test_hostile_code_without_gate_has_no_effect_outside_the_worker(tmp_path, monkeypatch, available):
    outside, secret = tmp_path / "outside.txt", tmp_path / "secret.txt"
    secret.write_text("the-secret-4f1c9")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(listener.accept())
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    hostile = payloads(outside, secret, listener.getsockname()[1])
    task = get_task("cartpole")
    sources = [task.human_reward] + list(hostile.values())
    # the hook: no static gate in the loop, full builtins in the worker and the checker
    monkeypatch.setattr(loop, "check_source", lambda *a, **k: [])
    monkeypatch.setenv(UNGUARDED_TEST_HOOK, "1")
    monkeypatch.setattr(loop, "make_proposer", lambda *a, **k: _Fixed(list(sources)))
    cfg = tiny_cfg(iterations=1, samples=len(sources), baselines=False, check_cpu_s=5, check_memory_mb=1024,
                   max_generation_retries=0, sandbox_memory_mb=12000)
    try:
        summary = run(cfg, tmp_path / "run")
    finally:
        stop.set()
    records = {json.loads(p.read_text())["source"]: json.loads(p.read_text())
               for p in (tmp_path / "run").rglob("candidate.json")}
    # the run completed and the good candidate trained beside the hostile ones
    assert summary["status"] == "complete"
    assert records[task.human_reward]["status"] == "trained"
    assert summary["sandbox"]["network"].startswith("namespace") and summary["sandbox"]["filesystem"].startswith(
        "landlock") and summary["sandbox"]["limits"]["memory_mb"] == 12000
    # Landlock refuses, or (with a mount namespace) the file is not there / its folder is read-only
    expected = {"write outside": ("PermissionError", "Read-only file system"),
                "read outside": ("PermissionError", "No such file or directory"), "connect": ("OSError",),
                "spawn loop": ("PermissionError",), "memory": ("MemoryError",)}
    for name, src in hostile.items():
        rec = records[src]
        reason = rec["validation"]["reason"]
        assert rec["status"] == "rejected", (name, rec["status"], reason)
        assert any(e in reason for e in expected[name.split(" (")[0]]), (name, reason)
    # nothing happened outside the worker
    assert not outside.exists()
    assert connections == []
    assert _sleepers() == []
    leaked = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and b"the-secret-4f1c9" in p.read_bytes()]
    assert leaked == []
    # the worker wrote only beneath its own directory (and the compile cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "secret.txt"]
    listener.close()


def test_worker_writes_only_in_its_own_directory_and_keeps_working(tmp_path, available):
    """Landlock's effect on an ordinary run: job files under <run>/worker, records where they were."""
    summary = run(tiny_cfg(iterations=1, samples=2), tmp_path / "run")
    assert summary["status"] == "complete" and summary["sandbox"]["missing"] == []
    assert "seccomp: no new processes" in summary["sandbox"]["processes"]
    attempt = tmp_path / "run" / "generations" / "gen_00" / "worker" / "attempt_0"
    assert (attempt / "job.json").is_file() and (attempt / "result.json").is_file()


def test_strict_mode_refuses_where_isolation_is_missing(tmp_path, monkeypatch):
    from rewardsmith.evolve import settings

    monkeypatch.setattr(settings, "sandbox_probe", lambda: {"missing": ["network"]})
    from rewardsmith.errors import UserError

    with pytest.raises(UserError, match="sandbox=strict: this machine gives the training worker no network"):
        run(tiny_cfg(sandbox="strict"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="sandbox must be auto, strict or off"):
        run(tiny_cfg(sandbox="maybe"), tmp_path / "run")


def test_no_new_processes_filter_keeps_threads(tmp_path):
    """The seccomp filter alone, in a child: threads start, processes do not."""
    import subprocess
    import sys

    code = ("import os, subprocess, threading; from rewardsmith.isolation.sandbox import forbid_new_processes\n"
            "assert forbid_new_processes()\n"
            "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
            "for f in (lambda: subprocess.run(['true']), os.fork):\n"
            "    try:\n        f(); print('spawned')\n    except PermissionError:\n        print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if "assert" in out.stderr:
        pytest.skip("no seccomp on this machine")
    assert out.stdout.split() == ["refused", "refused"], out.stderr


def test_the_filter_covers_threads_started_before_it_and_32_bit_calls():
    """A thread that was running before the filter cannot fork (TSYNC), and a 32-bit int 0x80 fork
    (another architecture's system call) kills the process instead of running."""
    import platform
    import subprocess
    import sys

    if platform.machine() != "x86_64":
        pytest.skip("x86_64 only")
    code = ("import os, threading, queue; from rewardsmith.isolation.sandbox import forbid_new_processes\n"
            "go, done = queue.Queue(), queue.Queue()\n"
            "def early():\n    go.get()\n    try:\n        pid = os.fork()\n"
            "        if pid == 0: os._exit(0)\n        done.put('spawned')\n"
            "    except PermissionError:\n        done.put('refused')\n"
            "t = threading.Thread(target=early); t.start()\n"
            "assert forbid_new_processes()\n"
            "go.put(1); print(done.get(), flush=True); t.join()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if "AssertionError" in out.stderr:
        pytest.skip("no seccomp on this machine")
    assert out.stdout.split() == ["refused"], out.stdout + out.stderr
    int80 = ("import ctypes, mmap; from rewardsmith.isolation.sandbox import forbid_new_processes\n"
             "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
             "m.write(bytes([0xb8, 2, 0, 0, 0, 0xcd, 0x80, 0xc3]))  # mov eax, 2 (i386 fork); int 0x80; ret\n"
             "f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n"
             "assert forbid_new_processes()\n"
             "print('returned', f(), flush=True)\n")
    out = subprocess.run([sys.executable, "-c", int80], capture_output=True, text=True, timeout=60)
    assert "returned" not in out.stdout and out.returncode == -31, (out.returncode, out.stdout, out.stderr[-500:])


def test_the_filter_refuses_unix_sockets(tmp_path):
    """A socket file outside the worker (think docker's, D-Bus, an ssh agent) cannot be reached once the
    filter is on: socket(AF_UNIX) and socketpair are refused; pipes still work."""
    import socket as socketlib
    import subprocess
    import sys

    path = tmp_path / "outside.sock"
    server = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    code = ("import os, socket; from rewardsmith.isolation.sandbox import forbid_new_processes\n"
            "assert forbid_new_processes()\n"
            "r, w = os.pipe(); os.write(w, b'x'); assert os.read(r, 1) == b'x'\n"
            "for f in (lambda: socket.socket(socket.AF_UNIX).connect(%r), socket.socketpair,\n"
            "          lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)):\n"
            "    try:\n        f(); print('opened')\n    except PermissionError:\n        print('refused')\n"
            "socket.socket(socket.AF_INET).close(); print('inet')\n" % str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    server.close()
    if "AssertionError" in out.stderr:
        pytest.skip("no seccomp on this machine")
    assert out.stdout.split() == ["refused", "refused", "refused", "inet"], out.stdout + out.stderr


ACTIONS = r'''
import ctypes, json, os, sys
from rewardsmith.isolation import sandbox
outside, shm, kept, w = sys.argv[1:5]
rep = sandbox.enter(sandbox.Policy(mode="auto", write=(w,), read=(os.path.dirname(kept),)))
out = {"report": rep}
def act(name, f):
    try:
        out[name] = ["done", repr(f())]
    except Exception as e:
        out[name] = [type(e).__name__, str(e)]
act("read outside", lambda: open(outside).read())
act("write shm", lambda: open(shm, "w").write("overwritten"))
act("list shm", lambda: os.listdir("/dev/shm"))
act("chmod", lambda: os.chmod(kept, 0o777))
act("utime", lambda: os.utime(kept, (0, 0)))
act("chown", lambda: os.chown(kept, 4242, 4242))
act("write kept", lambda: open(kept, "w").write("overwritten"))
act("read kept", lambda: open(kept).read())
act("kmsg", lambda: open("/dev/kmsg").read(1))
act("processes", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
act("run", lambda: os.listdir("/run"))
act("shadow", lambda: open("/etc/shadow").read(1))
act("passwd", lambda: len(open("/etc/passwd").read()) > 0)
act("umount", lambda: ctypes.CDLL(None, use_errno=True).umount2(b"/tmp", 2) == 0 or ctypes.get_errno())
act("own write", lambda: open(os.path.join(w, "mine.txt"), "w").write("ok"))
act("caps", lambda: [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(("CapEff", "CapBnd"))])
print(json.dumps(out))
'''


def test_mount_namespace_hides_the_machine_and_leaves_outside_files_unchanged(tmp_path, available):
    """With the worker's own mount namespace: /tmp, /run and /dev/shm are private, only the worker's own
    processes are visible, /etc is read only where Python needs it, no file outside can change its
    mode, times, owner or content, and the worker holds no capability (so it cannot unmount the
    covers), while its own directory stays writable."""
    import os
    import subprocess
    import sys
    import uuid

    outside = tmp_path / "outside.txt"
    outside.write_text("outside-7d1e")
    kept_dir, w = tmp_path / "task", tmp_path / "worker"
    kept_dir.mkdir()
    w.mkdir()
    kept = kept_dir / "task.py"
    kept.write_text("TASK = 1\n")
    before = os.stat(kept)
    shm = Path("/dev/shm") / f"rewardsmith-test-{uuid.uuid4().hex}"
    shm.write_text("host's")
    try:
        out = subprocess.run([sys.executable, "-c", ACTIONS, str(outside), str(shm), str(kept), str(w)],
                             capture_output=True, text=True, timeout=120, cwd=w,
                             env={**os.environ, "PYTHONPATH": str(Path(sandbox.__file__).parents[2])})
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert shm.read_text() == "host's"
    finally:
        shm.unlink()
    mounts = got["report"].get("mounts") or {}
    if "error" in mounts:
        pytest.skip(f"no mount namespace here: {mounts['error']}")
    assert mounts["proc"] == "own pid namespace" and set(mounts["hidden"]) >= {"/tmp", "/run"}
    assert set(mounts["dev"]) <= {"null", "zero", "full", "random", "urandom"} and "null" in mounts["dev"]
    assert got["read outside"][0] == "FileNotFoundError"
    assert got["write shm"][0] in ("FileNotFoundError", "PermissionError") and got["list shm"] == ["done", "[]"]
    for name in ("chmod", "utime", "chown"):
        assert "Read-only file system" in got[name][1], (name, got[name])
    assert got["write kept"][0] in ("OSError", "PermissionError") and got["read kept"] == ["done", "'TASK = 1\\n'"]
    assert got["kmsg"][0] == "FileNotFoundError"
    assert got["processes"] == ["done", "[1]"]
    assert got["run"] == ["done", "[]"] or got["run"][0] == "PermissionError"
    if Path("/etc/shadow").exists():
        assert got["shadow"][0] == "PermissionError"
    assert got["passwd"] == ["done", "True"]
    assert got["umount"] == ["done", str(1)], got["umount"]  # EPERM
    assert got["own write"] == ["done", "2"] and (w / "mine.txt").read_text() == "ok"
    assert got["caps"] == ["done", "['0000000000000000', '0000000000000000']"]
    assert got["report"]["user"].startswith("uid ") and not got["report"]["user"].startswith("uid 0 ")
    after = os.stat(kept)
    assert (after.st_mode, after.st_mtime_ns, after.st_uid) == (before.st_mode, before.st_mtime_ns, before.st_uid)
    assert kept.read_text() == "TASK = 1\n" and outside.read_text() == "outside-7d1e"


def test_a_partial_sandbox_is_named():
    """Where the kernel gives network and file isolation but not every layer beneath, the report names
    what is missing (the run warns once with it)."""
    full = {"mounts": {"proc": "own pid namespace", "read_only_count": [20, 20]},
            "user": "uid 1000 inside, capabilities dropped"}
    assert sandbox._partial(full) == []
    assert sandbox._partial({"mounts": {"error": "no mount namespace"}}) == ["no private mounts (no mount namespace)"]
    weak = {"mounts": {"proc": "host's (Operation not permitted)", "read_only_count": [18, 20]},
            "user": "uid 1000 inside, capabilities kept (capset failed)"}
    assert sandbox._partial(weak) == ["/proc not private: host's (Operation not permitted)",
                                      "2 of 20 mounts not read-only", "capabilities kept"]


def test_a_worker_that_fills_its_folder_is_stopped_with_the_reason(tmp_path, monkeypatch, available):
    """Each file under the file-size cap, their sum past ``sandbox_folder_mb``: the worker is stopped
    from outside, the generation's members fail with that one line, and the run still completes."""
    fill = TEMPLATE.replace("{everywhere}", "False").replace(
        "{action}", "    import os, time\n    for i in range(400):\n"
                    "        open(f'fill-{i}.bin', 'wb').write(os.urandom(1024 * 1024))\n    time.sleep(60)")
    monkeypatch.setattr(loop, "check_source", lambda *a, **k: [])
    monkeypatch.setenv(UNGUARDED_TEST_HOOK, "1")
    monkeypatch.setattr(loop, "make_proposer", lambda *a, **k: _Fixed([fill]))
    cfg = tiny_cfg(iterations=1, samples=1, baselines=False, max_generation_retries=0, sandbox_folder_mb=64,
                   sandbox_file_mb=4, final_eval=False)
    summary = run(cfg, tmp_path / "run")
    rec = next(json.loads(p.read_text()) for p in (tmp_path / "run").rglob("candidate.json"))
    text = json.dumps(rec)
    assert "grew past its bound" in text and "sandbox_folder_mb=64" in text, text[-2000:]
    assert rec["status"] != "trained" and summary["status"] == "no_candidate_trained"
    used = sum(p.stat().st_size for p in (tmp_path / "run").rglob("fill-*.bin"))
    assert used < 400 * 1024 * 1024  # stopped long before the end


def test_the_folder_guard_counts_blocks_and_entries(tmp_path):
    import subprocess
    import sys

    from rewardsmith.isolation.child import FolderGuard

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    (tmp_path / "sparse").write_bytes(b"")
    with open(tmp_path / "sparse", "wb") as f:
        f.seek(10 * 2 ** 30)
        f.write(b"x")  # 10 GB apparent, one block in use
    for i in range(30):
        (tmp_path / f"e{i}").write_text("x")
    g = FolderGuard(proc, tmp_path, 0)  # no bound: nothing watched
    used, entries = FolderGuard.usage(type("G", (), {"folder": tmp_path, "max_entries": 10 ** 6})())
    assert used < 2 ** 20 and entries == 31 and g.reason is None
    g = FolderGuard(proc, tmp_path, 1024, every_s=0.05, max_entries=20)
    proc.wait(timeout=30)
    assert "more than 20 entries" in g.reason and proc.returncode != 0
