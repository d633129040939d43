"""Child processes of rewardsmith: a module of this package started with the package importable, in
a process group of its own and dying with its parent (``start_module``); its JSON lines pumped to the
caller (``pump_json_lines``); stopped with its whole group (``kill_group``); its folder's size watched
(``FolderGuard``); the last line of its log for a one-line error (``last_line``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Mapping

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # what holds the rewardsmith package

# Variables a child that runs candidate code inherits. Everything else is dropped, and even these are
# dropped when their name looks like a credential.
_ENV_ALLOW = re.compile(
    r"^(PATH|HOME|USER|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TEMP|TMP|PYTHONPATH|PYTHONHASHSEED|PYTHONUTF8|"
    r"VIRTUAL_ENV|XLA_FLAGS|JAX_[A-Z0-9_]+|TF_CPP_MIN_LOG_LEVEL|CUDA_VISIBLE_DEVICES|NVIDIA_[A-Z_]+|"
    r"LD_LIBRARY_PATH|MUJOCO_GL|PYOPENGL_PLATFORM|OMP_NUM_THREADS|OPENBLAS_[A-Z0-9_]+|MKL_NUM_THREADS|"
    r"REWARDSMITH_CPU_DEVICES|REWARDSMITH_TASK_PATH|REWARDSMITH_TEST_ONLY_UNGUARDED_REWARDS|SYSTEMROOT)$")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


def scrubbed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a child that runs candidate code inherits of ``base`` (this process's environment): the
    allowed names only, and none that looks like a credential."""
    base = dict(os.environ if base is None else base)
    return {k: v for k, v in base.items() if _ENV_ALLOW.match(k) and not _SECRET.search(k)}

_PR_SET_PDEATHSIG = 1


def die_with_parent(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: the kernel kills the child when the process that started it ends, however
    it ends (SIGKILL and crashes included); a sandboxed worker's children die with it (its PID
    namespace ends with its first process). prctl is looked up here, in the parent: between fork and
    exec the child only calls it."""
    parent = os.getpid()
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None  # not Linux: children still end at the end of their input

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent already died between fork and prctl
            os._exit(1)
        if then is not None:
            then()
    return preexec


def importable(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this package first on PYTHONPATH, so a child imports this very code (a source
    tree that is not installed included)."""
    out = dict(env)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, out.get("PYTHONPATH", "")) if p)
    return out


def start_module(module: str, args: list[str] | tuple[str, ...] = (), *, env: Mapping[str, str], cwd,
                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None, text: bool = True,
                 preexec: Callable[[], None] | None = None) -> subprocess.Popen:
    """``python -m module args`` as a child: this package importable, a session (process group) of its
    own so ``kill_group`` ends everything it started, killed by the kernel if this process ends."""
    return subprocess.Popen([sys.executable, "-m", module, *args], stdin=stdin, stdout=stdout, stderr=stderr,
                            env=importable(env), cwd=str(cwd), text=text, start_new_session=True,
                            preexec_fn=die_with_parent(preexec))


def pump_json_lines(stream: IO, on_event: Callable[[dict | None], None],
                    on_text: Callable[[str], None] | None = None) -> None:
    """Each line of ``stream`` that is a JSON object goes to ``on_event``, any other to ``on_text``;
    ``on_event(None)`` once the stream ends. Run it in a thread of its own."""
    for raw in stream:
        line = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            on_event(event)
        elif on_text is not None:
            on_text(line)
    on_event(None)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the child's whole process group, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.kill()
    proc.wait()


def last_line(path: str | os.PathLike, missing: str = "no log") -> str:
    """The last non-empty line of a log, for a one-line error."""
    try:
        lines = [ln for ln in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return missing
    return lines[-1][:300] if lines else "no output"


class FolderGuard:
    """A child's own directory watched from outside: once it holds more than ``limit_mb`` (blocks in
    use, so sparse files count as what they occupy) or more than ``max_entries`` files and folders, the
    child is stopped and ``reason`` says why. File size alone is bounded inside (``sandbox_file_mb``);
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
                kill_group(self.proc)
                return
            time.sleep(self.every_s)
