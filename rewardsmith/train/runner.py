"""Orchestrator side of training: start the keyless worker, stream its progress, enforce a timeout."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from rewardsmith.childproc import die_with_parent
from rewardsmith.rundir import WorkerFiles, atomic_write_json, read_json
from rewardsmith.train.sandbox import ENV as SANDBOX_ENV, Policy

# Variables the worker inherits. Everything else is dropped, and even these are dropped when their
# name looks like a credential.
_ENV_ALLOW = re.compile(
    r"^(PATH|HOME|USER|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TEMP|TMP|PYTHONPATH|PYTHONHASHSEED|PYTHONUTF8|"
    r"VIRTUAL_ENV|XLA_FLAGS|JAX_[A-Z0-9_]+|TF_CPP_MIN_LOG_LEVEL|CUDA_VISIBLE_DEVICES|NVIDIA_[A-Z_]+|"
    r"LD_LIBRARY_PATH|MUJOCO_GL|PYOPENGL_PLATFORM|OMP_NUM_THREADS|OPENBLAS_[A-Z0-9_]+|MKL_NUM_THREADS|"
    r"REWARDSMITH_CPU_DEVICES|REWARDSMITH_TASK_PATH|REWARDSMITH_TEST_ONLY_UNGUARDED_REWARDS|SYSTEMROOT)$")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


class WorkerError(RuntimeError):
    """The worker crashed, hung or wrote no result; the message is one line for the user."""


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    base = dict(os.environ if base is None else base)
    return {k: v for k, v in base.items() if _ENV_ALLOW.match(k) and not _SECRET.search(k)}


def _writable(write_dir: Path, compile_cache_dir: str | None) -> tuple[str, ...]:
    """What a worker may write: beneath its own directory and the compilation cache (created here)."""
    write = [str(Path(write_dir).resolve())]
    if compile_cache_dir:
        Path(compile_cache_dir).mkdir(parents=True, exist_ok=True)
        write.append(str(Path(compile_cache_dir).resolve()))
    return tuple(write)


def sandbox_policy(settings, write_dir: Path, task_file: str | None = None) -> Policy:
    """The worker's OS isolation for a run's worker settings."""
    read = [str(Path(task_file).resolve().parent)] if task_file else []
    return Policy(mode=settings.sandbox, write=_writable(write_dir, settings.compile_cache_dir), read=tuple(read),
                  memory_mb=int(settings.sandbox_memory_mb or 0), file_mb=int(settings.sandbox_file_mb or 0),
                  folder_mb=int(getattr(settings, "sandbox_folder_mb", 0) or 0))


class FolderGuard:
    """The worker's own directory watched from outside: once it holds more than ``limit_mb`` (blocks in
    use, so sparse files count as what they occupy) or more than ``max_entries`` files and folders, the
    worker is stopped and ``reason`` says why. File size alone is bounded inside (``sandbox_file_mb``);
    this bounds their sum, within one poll (``every_s``)."""

    def __init__(self, proc: subprocess.Popen, folder: str | os.PathLike | None, limit_mb: int, *,
                 every_s: float = 1.0, max_entries: int = 200_000):
        self.reason: str | None = None
        if not folder or limit_mb <= 0 or proc.poll() is not None:
            return
        self.proc, self.folder, self.limit, self.max_entries = proc, Path(folder), limit_mb * 1024 * 1024, max_entries
        self.every_s = every_s
        threading.Thread(target=self._watch, daemon=True).start()

    def usage(self) -> tuple[int, int]:
        """(bytes in use, entries) beneath the folder; links are not followed."""
        used, entries, stack = 0, 0, [str(self.folder)]
        while stack and entries <= self.max_entries:
            try:
                with os.scandir(stack.pop()) as it:
                    for e in it:
                        entries += 1
                        try:
                            st = e.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        used += st.st_blocks * 512
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
            except OSError:
                continue
        return used, entries

    def _watch(self) -> None:
        while self.proc.poll() is None:
            used, entries = self.usage()
            if used > self.limit or entries > self.max_entries:
                what = f"{used / 2 ** 20:.0f} MB" if used > self.limit else f"more than {self.max_entries:,} entries"
                self.reason = (f"the worker's folder {self.folder} grew past its bound ({what}; sandbox_folder_mb="
                               f"{self.limit // 2 ** 20}) and the worker was stopped")
                _kill(self.proc)
                return
            time.sleep(self.every_s)


def run_worker(job: dict, workdir: Path, *, timeout_s: float,
               on_event: Callable[[dict], None] | None = None, policy: Policy | None = None,
               extra_env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None) -> dict:
    """Run one job in a fresh worker process; return its result or raise WorkerError. ``extra_env``
    (only names the scrub lets through) and ``preexec_fn`` go to the worker process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = WorkerFiles(workdir)
    job_path, result_path, log_path = files.job, files.result, files.log
    if result_path.exists():
        result_path.unlink()
    atomic_write_json(job_path, job)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = _start_worker([str(job_path), str(result_path)], log, workdir, stdin=subprocess.DEVNULL,
                             policy=policy or Policy(mode="auto", write=_writable(workdir, job.get("compile_cache_dir"))),
                             extra_env=extra_env, preexec_fn=preexec_fn)
        reader = threading.Thread(target=_pump, args=(proc, on_event, log), daemon=True)
        reader.start()
        t0 = time.monotonic()
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            reader.join(5)
            raise WorkerError(f"training worker exceeded its {timeout_s:g} s timeout and was stopped "
                              f"(worker log: {log_path})") from None
        reader.join(5)
    if rc != 0 and _guard_reason(proc):
        raise WorkerError(f"{_guard_reason(proc)} (log: {log_path})")
    if rc != 0:
        tail = _last_line(log_path)
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
        raise WorkerError(f"training worker {how} after {time.monotonic() - t0:.0f} s: {tail} (log: {log_path})")
    if not result_path.exists():
        raise WorkerError(f"training worker wrote no result (log: {log_path})")
    return read_json(result_path)


def _start_worker(args: list[str], log, cwd: Path, stdin, policy: Policy,
                  extra_env: dict[str, str] | None = None, preexec_fn=None) -> subprocess.Popen:
    """A worker process with the scrubbed environment, in a session of its own (killed as a group),
    told its sandbox policy; its temporary files go beneath its own directory."""
    env = worker_env({**os.environ, **(extra_env or {})})
    env[SANDBOX_ENV] = policy.to_env()
    tmp = WorkerFiles(cwd).tmp
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = env["MPLCONFIGDIR"] = str(tmp.resolve())
    # the worker imports this very package; make sure it can when running from a source tree
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "rewardsmith.train.worker", *args], stdout=subprocess.PIPE,
                            stderr=log, stdin=stdin, env=env, text=True, start_new_session=True, cwd=str(cwd),
                            preexec_fn=die_with_parent(preexec_fn))
    proc.folder_guard = FolderGuard(proc, policy.write[0] if policy.write else None, policy.folder_mb)
    return proc


def _guard_reason(proc) -> str | None:
    guard = getattr(proc, "folder_guard", None)
    return guard.reason if guard is not None else None


class WarmWorker:
    """One worker process for a whole run, kept across generations and the final evaluation, so its
    compiled trainers, environments and candidate checker stay loaded. It is started with the same
    scrubbed environment as a one-off worker and is still the only process that executes candidate
    code. A job past its timeout kills it; a crash ends it; either way the job fails with one line
    and the next job starts a fresh worker. Logs: ``log_dir/worker-<n>.log``."""

    def __init__(self, log_dir: str | os.PathLike, policy: Policy):
        self.log_dir = Path(log_dir)
        self.policy = policy
        self.sandbox: dict | None = None  # what the worker's sandbox applied, as it reported
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _ensure(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = WorkerFiles(self.log_dir).numbered_log(self.starts)
        with open(self._log_path, "w", encoding="utf-8") as log:
            self.proc = _start_worker(["--serve"], log, self.log_dir, stdin=subprocess.PIPE, policy=self.policy)
        self._events = queue.SimpleQueue()
        threading.Thread(target=_pump_queue, args=(self.proc, self._events, self._log_path), daemon=True).start()

    def run(self, job: dict, workdir: Path, *, timeout_s: float,
            on_event: Callable[[dict], None] | None = None) -> dict:
        """Run one job; return its result or raise WorkerError."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        # the record in ``workdir``; the worker reads and writes only beneath its own directory
        record = WorkerFiles(workdir)
        atomic_write_json(record.job, job)
        io = WorkerFiles(self.log_dir).exchange
        job_path, result_path = io.job, io.result
        if result_path.exists():
            result_path.unlink()
        atomic_write_json(job_path, job)
        self._ensure()
        assert self.proc is not None and self.proc.stdin is not None
        t0 = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps({"job": str(job_path), "result": str(result_path)}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died: reported below
        while True:
            left = timeout_s - (time.monotonic() - t0)
            try:
                event = self._events.get(timeout=max(0.01, left))
            except queue.Empty:
                self.stop()
                raise WorkerError(f"training worker exceeded its {timeout_s:g} s timeout and was stopped "
                                  f"(worker log: {self._log_path})") from None
            if event is None:  # the process ended
                rc = self.proc.wait()
                guarded, self.proc = _guard_reason(self.proc), None
                if guarded:
                    raise WorkerError(f"{guarded} (log: {self._log_path})")
                how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
                raise WorkerError(f"training worker {how} after {time.monotonic() - t0:.0f} s: "
                                  f"{_last_line(self._log_path)} (log: {self._log_path})")
            if event.get("event") == "job_done":
                if not event.get("ok"):
                    raise WorkerError(f"training worker failed: {event.get('error')} (log: {self._log_path})")
                if not result_path.exists():
                    raise WorkerError(f"training worker wrote no result (log: {self._log_path})")
                result = read_json(result_path)
                os.replace(result_path, record.result)
                return result
            if event.get("event") == "sandbox":
                self.sandbox = {k: v for k, v in event.items() if k != "event"}
            if on_event is not None:
                try:
                    on_event(event)
                except Exception:  # noqa: BLE001 - a display problem never stops training
                    pass

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None

    def close(self) -> None:
        """End the worker: close its input (it exits when idle), kill it if it does not."""
        if self.proc is None:
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            pass
        self.stop()

    def __enter__(self) -> "WarmWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pump_queue(proc: subprocess.Popen, events: queue.SimpleQueue, log_path: Path) -> None:
    """Worker stdout -> events (JSON lines); anything else goes to its log; None once it ends."""
    assert proc.stdout is not None
    with open(log_path, "a", encoding="utf-8") as log:
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                events.put(json.loads(line))
            except json.JSONDecodeError:
                log.write(line + "\n")
                log.flush()
    events.put(None)


def _pump(proc: subprocess.Popen, on_event, log) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            log.write(line + "\n")
            continue
        if on_event is not None:
            try:
                on_event(event)
            except Exception:  # noqa: BLE001 - a display problem never stops training
                pass


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"
