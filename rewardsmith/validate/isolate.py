"""Each candidate's load and trace in a process of its own, under its own limits.

Loading reward code runs its module level and tracing runs its Python, so a candidate can spend
unbounded CPU or memory before any training starts (``n ** 64 ** 64``, a list of 10**11 items, loops
nested four deep). ``check_isolated`` starts one checker process (``python -m
rewardsmith.validate.isolate``, with the caller's environment minus credentials; kept for a run) that
imports JAX once and forks a child per candidate; each child sets CPU-time, address-space and file-size limits
before it executes anything from the candidate, loads it, runs ``jax.eval_shape`` on the task's
schema and reports. A child that runs out of CPU, memory or wall time fails that candidate with the
reason; its siblings are checked as usual. Only a candidate that passed here is loaded by the
caller.

Forking is safe here: the checker forks before JAX has started a backend or any thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Iterable, Mapping

from rewardsmith.isolation.child import kill_group, last_line, pump_json_lines, start_module
from rewardsmith.records import Validation

_MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CheckLimits:
    """Limits for loading and tracing one candidate."""

    cpu_s: float = 20.0        # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 2048      # address space the candidate may add to the checker's own (RLIMIT_AS)
    wall_s: float = 0.0        # wall-clock seconds; 0 = 2 x cpu_s + 10
    # what one transition's reward may cost once compiled (XLA's cost analysis): flops, and megabytes
    # accessed or held in temporary buffers; no reasonable reward comes near the defaults
    max_flops: float = 1e7
    max_mb: float = 16.0
    # and at most this many times what one step of the environment costs (0: no relative bound)
    relative_cost: float = 1000.0

    def __post_init__(self) -> None:
        if not (isinstance(self.cpu_s, (int, float)) and self.cpu_s > 0):
            raise ValueError(f"check_cpu_s must be a positive number of seconds, got {self.cpu_s!r}")
        if not (isinstance(self.memory_mb, int) and not isinstance(self.memory_mb, bool) and self.memory_mb >= 64):
            raise ValueError(f"check_memory_mb must be an integer of at least 64, got {self.memory_mb!r}")
        if not (isinstance(self.wall_s, (int, float)) and self.wall_s >= 0):
            raise ValueError(f"check_wall_s must be 0 (automatic) or a positive number, got {self.wall_s!r}")
        for key, value in (("check_max_flops", self.max_flops), ("check_max_mb", self.max_mb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{key} must be a positive number, got {value!r}")
        r = self.relative_cost
        if isinstance(r, bool) or not isinstance(r, (int, float)) or r < 0:
            raise ValueError(f"check_relative_cost must be a non-negative number (0: off), got {r!r}")

    @property
    def wall(self) -> float:
        return float(self.wall_s) or 2.0 * float(self.cpu_s) + 10.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "CheckLimits":
        return cls(**dict(data or {}))


@dataclasses.dataclass(frozen=True)
class CheckJob:
    """One batch for the checker's child: candidates ({id, source}) loaded and traced on ``schema``."""

    schema: dict
    max_components: int
    limits: CheckLimits
    candidates: list
    parallel: int = 1

    def to_json(self) -> dict:
        return {"schema": self.schema, "max_components": self.max_components, "limits": self.limits.to_json(),
                "parallel": self.parallel, "candidates": list(self.candidates)}

    @classmethod
    def from_json(cls, d: dict) -> "CheckJob":
        return cls(schema=d["schema"], max_components=int(d["max_components"]), limits=CheckLimits.from_json(d["limits"]),
                   parallel=int(d.get("parallel", 1)), candidates=list(d["candidates"]))


class Checker:
    """The checker process: started once, it checks batch after batch (one JSON line each way per
    candidate) until closed. ``submit`` sends a batch and returns at once, so the checker's start-up
    and work overlap with the caller's; ``collect`` waits for that batch's answers. A checker that
    died or hung is replaced by a new one at the next ``submit``."""

    def __init__(self, env: Mapping[str, str] | None = None, parallel: int | None = None):
        self.env = dict(os.environ if env is None else env)
        self.parallel = int(parallel or max(1, min(4, os.cpu_count() or 1)))
        self.proc: subprocess.Popen | None = None
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: tuple[list[str], float] | None = None  # ids and deadline of the batch in flight
        self._cwd = tempfile.TemporaryDirectory(prefix="rewardsmith-check-")
        self._log = os.path.join(self._cwd.name, "checker.log")

    def _start(self) -> None:
        env = dict(self.env)
        env["JAX_PLATFORMS"] = "cpu"  # shapes only: never claim an accelerator for a check
        self._lines = queue.SimpleQueue()
        with open(self._log, "ab") as log:
            self.proc = start_module("rewardsmith.validate.isolate", env=env, cwd=self._cwd.name,
                                     stdin=subprocess.PIPE, stderr=log, text=False)
        threading.Thread(target=pump_json_lines, args=(self.proc.stdout, self._lines.put), daemon=True).start()

    def submit(self, candidates: Iterable[tuple[str, str]], schema_json: Mapping[str, Any], max_components: int,
               limits: CheckLimits, startup_s: float = 120.0) -> None:
        candidates = list(candidates)
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        job = CheckJob(schema=dict(schema_json), max_components=int(max_components), limits=limits,
                       parallel=self.parallel, candidates=[{"id": cid, "source": src} for cid, src in candidates])
        rounds = -(-max(1, len(candidates)) // self.parallel)
        self._pending = ([cid for cid, _ in candidates], time.monotonic() + startup_s + rounds * (limits.wall + 1.0))
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(job.to_json()) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # collect() reports the dead checker

    def collect(self) -> dict[str, Validation]:
        """The answers to the batch in flight; a candidate without one fails with the reason."""
        assert self._pending is not None, "collect() without submit()"
        ids, deadline = self._pending
        self._pending = None
        found: dict[str, Validation] = {}
        problem = ""
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                problem = "the check process did not answer in time"
                self.close_process()
                break
            if line is None:
                problem = f"the check process ended: {last_line(self._log, missing='no output')}"
                self.close_process()
                break
            rec = line
            if rec.get("done"):
                break
            if rec.get("id") in ids:
                found[rec["id"]] = Validation(**rec["validation"])
        for cid in ids:
            if cid not in found:
                found[cid] = Validation(ok=False, stage="trace",
                                        reason=f"not checked: {problem or 'the check process gave no answer'}")
        return found

    def check(self, candidates, schema_json, max_components, limits) -> dict[str, Validation]:
        self.submit(candidates, schema_json, max_components, limits)
        return self.collect()

    def close_process(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def close(self) -> None:
        self.close_process()
        self._cwd.cleanup()


def check_isolated(candidates: list[tuple[str, str]], schema_json: Mapping[str, Any], max_components: int,
                   limits: CheckLimits | None = None, env: Mapping[str, str] | None = None) -> dict[str, Validation]:
    """Load and trace each (id, source) in a limited process of its own; a Validation per id."""
    if not candidates:
        return {}
    checker = Checker(env)
    try:
        return checker.check(candidates, schema_json, max_components, limits or CheckLimits())
    finally:
        checker.close()


def _address_space_now() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(cand: dict, schema, max_components: int, limits: CheckLimits, wfd: int) -> None:
    """Runs in the forked child: limits first, then the candidate's code."""
    import resource

    sys.dont_write_bytecode = True  # a module imported from here on must not write its .pyc: no file may be written
    # the CPU backend and its thread pools start here, before the limits: XLA names each new thread by
    # writing /proc/self/task/*/comm, which the file-size limit of 0 counts as a write (and kills)
    import jax
    import jax.numpy as jnp

    jax.jit(lambda x: x + 1.0).lower(jnp.float32(0.0)).compile()

    cpu = max(1, int(round(limits.cpu_s)))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    base = _address_space_now()
    if base:
        cap = base + limits.memory_mb * _MB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; a write past the limit ends the child
    from rewardsmith.isolation.sandbox import forbid_new_processes

    forbid_new_processes()  # candidate code starts no process (where the kernel allows the filter)
    from rewardsmith.validate.trace import trace_check

    try:
        # traced once; compiled on that one transition, within this child's limits: what it costs to train
        v, _ = trace_check(cand["source"], cand["id"], schema, max_components,
                                  cost_bounds=(limits.max_flops, limits.max_mb * _MB))
        if not v.ok and "MemoryError" in v.reason:
            v = dataclasses.replace(v, reason=f"{v.reason} (the memory limit is {limits.memory_mb} MB)")
        payload = dataclasses.asdict(v)
    except MemoryError:
        payload = dataclasses.asdict(Validation(ok=False, stage="trace", reason=(
            f"loading or tracing needed more than the {limits.memory_mb} MB memory limit")))
    except BaseException as e:  # noqa: BLE001 - whatever happens, report it as this candidate's
        payload = dataclasses.asdict(Validation(ok=False, stage="trace",
                                                reason=f"check failed: {type(e).__name__}: {str(e)[:300]}"))
    data = json.dumps(payload).encode("utf-8")
    while data:
        n = os.write(wfd, data)
        data = data[n:]
    os._exit(0)


def _describe_death(status: int, limits: CheckLimits, wall: bool) -> str:
    if wall:
        return f"loading or tracing took longer than {limits.wall:g} s (wall clock) and was stopped"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return f"loading or tracing exceeded the {limits.cpu_s:g} s CPU limit and was stopped"
        if sig == signal.SIGXFSZ:
            return "the candidate tried to write a file and was stopped"
        if sig == signal.SIGSEGV:
            return f"loading or tracing crashed (signal {sig}); possibly out of memory ({limits.memory_mb} MB limit)"
        return f"loading or tracing was stopped by signal {sig}"
    return f"loading or tracing ended without a result (exit code {os.WEXITSTATUS(status)})"


def _serve(job: CheckJob) -> None:
    import jax  # noqa: F401 - imported once here, inherited by every child
    import jax.numpy  # noqa: F401

    from rewardsmith.tasks.schema import StateSchema
    import rewardsmith.validate.trace  # noqa: F401 - the children's code, imported before forking

    schema = StateSchema.from_json(job.schema)
    limits = job.limits
    max_components = job.max_components
    parallel = max(1, job.parallel)
    queue = list(job.candidates)
    running: dict[int, tuple[dict, int, float, bytearray]] = {}  # pid -> (cand, read fd, deadline, data)

    def report(cand: dict, payload: dict) -> None:
        sys.stdout.write(json.dumps({"id": cand["id"], "validation": payload}) + "\n")
        sys.stdout.flush()

    while queue or running:
        while queue and len(running) < parallel:
            cand = queue.pop(0)
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child
                os.close(rfd)
                try:
                    _child(cand, schema, max_components, limits, wfd)
                finally:
                    os._exit(1)
            os.close(wfd)
            running[pid] = (cand, rfd, time.monotonic() + limits.wall, bytearray())
        fds = [v[1] for v in running.values()]
        ready, _, _ = select.select(fds, [], [], 0.05)
        for pid, (cand, rfd, deadline, data) in list(running.items()):
            if rfd in ready:
                chunk = os.read(rfd, 65536)
                if chunk:
                    data.extend(chunk)
                    continue
            done, status = os.waitpid(pid, os.WNOHANG)
            late = not done and time.monotonic() > deadline
            if late:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
            elif not done:
                continue
            while True:  # whatever is left in the pipe
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                data.extend(chunk)
            os.close(rfd)
            del running[pid]
            payload = None
            if not late and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                try:
                    payload = json.loads(data.decode("utf-8"))
                except ValueError:
                    payload = None
            if payload is None:
                payload = dataclasses.asdict(Validation(ok=False, stage="trace",
                                                        reason=_describe_death(status, limits, late)))
            report(cand, payload)


def main() -> int:
    for line in sys.stdin.buffer:  # one batch per line, until the caller closes the pipe
        if line.strip():
            _serve(CheckJob.from_json(json.loads(line.decode("utf-8"))))
            sys.stdout.write(json.dumps({"done": True}) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
