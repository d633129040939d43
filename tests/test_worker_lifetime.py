"""No worker outlives its run: however the orchestrator ends (SIGTERM, SIGINT, SIGKILL), the
training worker, its sandbox's PID-namespace child and the candidate checker end within seconds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _children() -> dict[int, int]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                out[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def _descendants(pid: int) -> set[int]:
    ppid = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in ppid.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_worker_ends_with_the_orchestrator(sig, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "rewardsmith.cli.main", "task=cartpole", "iterations=3",
                             "samples=2", "train.total_timesteps=5000000", "live=false", "final_eval=false",
                             f"hydra.run.dir={tmp_path / 'run'}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "CI": "true"})
    try:
        deadline = time.monotonic() + 240
        workers: set[int] = set()
        while time.monotonic() < deadline:  # until the worker is training (its sandbox child is up)
            workers = {p for p in _descendants(proc.pid) if "rewardsmith.train.worker" in _cmd(p)}
            log = tmp_path / "run" / "worker" / "worker-1.log"
            if len(workers) >= 1 and (tmp_path / "run" / "generations").is_dir() and log.is_file() \
                    and proc.poll() is None and time.monotonic() > deadline - 230:
                break
            time.sleep(0.5)
        assert workers and proc.poll() is None, "the run never started its worker"
        time.sleep(3)
        tree = _descendants(proc.pid)
        assert any("rewardsmith.train.worker" in _cmd(p) for p in tree)
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        end = time.monotonic() + 15
        while time.monotonic() < end and any(_alive(p) for p in tree):
            time.sleep(0.2)
        left = [(p, _cmd(p)) for p in tree if _alive(p)]
        assert not left, f"still running after {sig.name}: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _descendants(proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
