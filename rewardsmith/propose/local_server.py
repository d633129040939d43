"""A llama.cpp server for ``llm=local``: started for one run from a GGUF file, stopped with it.

``python -m llama_cpp.server`` (``pip install 'rewardsmith[local]'``, or any python that has
llama-cpp-python: ``llm.server_python``) on 127.0.0.1 and a free port, in a process group of its own.
The run waits until ``/v1/models`` answers, and stops the group when the proposer is closed, at
interpreter exit, and, should the run be killed outright, by the kernel (the server gets SIGTERM when
the process that started it dies), so it never outlives the run.

Threads default to 1: PPO training shares the CPU between generations and a second llama.cpp thread
collapses generation speed when it does. With a GPU present, every layer goes to it (``gpu_layers``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import weakref
from pathlib import Path

from rewardsmith.errors import UserError

_PR_SET_PDEATHSIG = 1
_live: "weakref.WeakSet[LocalServer]" = weakref.WeakSet()


def has_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Started first in the server's process: asks the kernel for SIGTERM when the run dies (Linux), gives up
# if the run is already gone, then becomes the server (exec keeps the process and the request). Done
# here rather than in a preexec_fn, which would run Python between fork and exec in a threaded process.
_WRAPPER = ("import ctypes, os, signal, sys\n"
            "try:\n"
            f"    ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM, 0, 0, 0)\n"
            "except Exception:\n"
            "    pass\n"
            "if os.getppid() != int(sys.argv[1]):\n"
            "    sys.exit(0)\n"
            "os.execv(sys.argv[2], sys.argv[2:])\n")


class LocalServer:
    def __init__(self, model_path: str, *, python: str | None = None, threads: int = 1, context: int = 8192,
                 gpu_layers: int | str = "auto", alias: str = "local", port: int = 0,
                 log_path: str | Path | None = None, start_timeout_s: float = 300.0, extra_args: list[str] = ()):
        self.model_path = str(Path(model_path).expanduser())
        self.python = python or sys.executable
        self.threads = int(threads)
        self.context = int(context)
        self.gpu_layers = (-1 if has_gpu() else 0) if gpu_layers in ("auto", None) else int(gpu_layers)
        self.alias = alias
        self.port = int(port) or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.start_timeout_s = float(start_timeout_s)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [self.python, "-m", "llama_cpp.server", "--model", self.model_path, "--model_alias", self.alias,
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.context),
                "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
                "--n_gpu_layers", str(self.gpu_layers), *self.extra_args]

    def start(self) -> str:
        """Start the server and wait until it answers; returns its OpenAI-compatible base URL."""
        if not Path(self.model_path).is_file():
            raise UserError(f"llm.model_path={self.model_path}: no such GGUF file")
        if self.threads < 1:
            raise UserError(f"llm.threads must be at least 1, got {self.threads}")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(self.threads))
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(os.getpid()), *self.command()],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         start_new_session=True)
        except OSError as e:
            raise UserError(f"llm=local: cannot start {self.python}: {e.strerror or e}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        _live.add(self)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                why = self._last_lines()
                self.proc = None
                hint = "" if "llama_cpp" not in why else \
                    " (pip install 'rewardsmith[local]', or point llm.server_python at a python that has llama-cpp-python)"
                raise UserError(f"llm=local: the llama.cpp server exited at start: {why}{hint}")
            if self.ready():
                return self.url
            time.sleep(0.5)
        self.stop()
        raise UserError(f"llm=local: the llama.cpp server did not answer within {self.start_timeout_s:g} s "
                        f"(log: {self.log_path or 'none'})")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/models", timeout=2.0) as r:
                return r.status == 200
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after 10 s."""
        proc, self.proc = self.proc, None
        _live.discard(self)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def _last_lines(self) -> str:
        if not self.log_path or not self.log_path.is_file():
            return "no log"
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-2:])[:400] if lines else "no output"

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()
