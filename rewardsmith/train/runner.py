"""Orchestrator side of training: start the keyless worker, stream its progress, enforce a timeout."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from rewardsmith.isolation.child import FolderGuard, kill_group, last_line, pump_json_lines, scrubbed_env, start_module
from rewardsmith.isolation.sandbox import ENV as SANDBOX_ENV, Policy, writable_dirs
from rewardsmith.rundir import WorkerFiles, atomic_write_json, read_json
from rewardsmith.records import Validation
from rewardsmith.train.job import CandidateOutcome, TrainJob, TrainResult

class WorkerError(RuntimeError):
    """The worker crashed, hung or wrote no result; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class StallLimits:
    """When a worker that still runs is taken as stalled by one candidate. ``rollout_s``: what running
    one compiled rollout-check program may take. ``training_s``: a training chunk taking longer than
    ``training_s`` and ``TRAINING_FACTOR`` x the slowest earlier chunk (the first chunk compiles: it
    is not timed and bounds only the second; the evaluation after the last chunk counts as a chunk).
    0: not watched."""

    rollout_s: float = 0.0
    training_s: float = 0.0

    TRAINING_FACTOR = 10.0


class Stalled(WorkerError):
    """A program of the candidates ``ids`` ran past its stall limit; the worker was stopped."""

    def __init__(self, kind: str, ids: list[str], waited_s: float, log_path):
        self.kind, self.ids, self.waited_s = kind, list(ids), float(waited_s)
        what = ("the rollout check" if kind == "rollout" else "training") + f" of {', '.join(self.ids)}"
        why = "check_rollout_s" if kind == "rollout" else "train_stall_s, or 10 x its slowest earlier chunk"
        super().__init__(f"{what} made no progress for {self.waited_s:.0f} s ({why}); the worker was stopped "
                         f"(worker log: {log_path})")


class StallWatch:
    """Follows the worker's events and keeps the deadline of the program in flight: a rollout-check
    program from its announcement (``rollout_checking``) until each of its candidates is reported;
    training from its second chunk (``progress``) on, reset at each rung (a new trainer may compile)."""

    def __init__(self, limits: StallLimits | None = None):
        self.limits = limits or StallLimits()
        self.kind, self.ids, self.deadline, self.since = "", [], None, 0.0
        self._open: set[str] = set()
        self._training: list[str] = []
        self._chunk_start: float | None = None
        self._chunks, self._slowest = 0, 0.0

    def feed(self, event: dict) -> None:
        kind, now = event.get("event"), time.monotonic()
        if kind == "rollout_checking" and self.limits.rollout_s > 0:
            self._set("rollout", [str(i) for i in event.get("ids") or []], now + self.limits.rollout_s)
            self._open = set(self.ids)
        elif kind == "rollout_checked" and self.kind == "rollout":
            self._open.discard(str(event.get("id")))
            if not self._open:
                self.deadline = None
        elif kind == "training":
            self._training = [str(i) for i in event.get("candidates") or []]
            self._chunk_start, self._chunks, self._slowest, self.deadline = now, 0, 0.0, None
        elif kind == "rung":  # the next stage may compile a trainer of its own size: timed afresh
            self._chunk_start, self._chunks, self._slowest, self.deadline = now, 0, 0.0, None
        elif kind == "progress" and self._chunk_start is not None:
            took, self._chunk_start = now - self._chunk_start, now
            self._chunks += 1
            if self._chunks > 1:  # the first chunk compiles: it bounds only the second
                self._slowest = max(self._slowest, took)
            if self.limits.training_s > 0:
                reference = self._slowest if self._chunks > 1 else took
                self._set("training", self._training,
                          now + max(self.limits.training_s, StallLimits.TRAINING_FACTOR * reference))
        elif kind == "trained":
            self.deadline, self._chunk_start = None, None

    def _set(self, kind: str, ids: list[str], deadline: float) -> None:
        self.kind, self.ids, self.deadline, self.since = kind, ids, deadline, time.monotonic()

    def left(self) -> float:
        """Seconds until the program in flight is past its limit (inf when none is watched)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def stalled(self, log_path) -> Stalled:
        return Stalled(self.kind, self.ids, time.monotonic() - self.since, log_path)

    def overdue(self, t0: float, timeout_s: float, log_path) -> WorkerError | None:
        """The error for a worker past its stall limit or its whole timeout (from ``t0``); None while neither."""
        if self.left() <= 0:
            return self.stalled(log_path)
        if time.monotonic() - t0 >= timeout_s:
            return WorkerError(f"training worker exceeded its {timeout_s:g} s timeout and was stopped "
                               f"(worker log: {log_path})")
        return None


def run_isolating_stalls(run_once: Callable[[TrainJob], TrainResult], job: TrainJob) -> TrainResult:
    """``run_once(job)``; where one candidate stalls a program (``Stalled``), it fails alone and the
    others train: a rollout-check program of several is checked again one candidate at a time
    (``rollout_apart``); a training program of several is split in two halves, each run on its own
    (again split where it stalls). A candidate whose own program stalls is rejected with the reason."""
    refused: dict[str, str] = {}
    result = _isolate(run_once, job, refused)
    if refused:
        done = result.candidates
        result.candidates = {cid: done[cid] if cid in done else CandidateOutcome(validation=Validation(
            ok=False, stage="trace", reason=refused[cid])) for cid in job.ids if cid in done or cid in refused}
    return result


def _isolate(run_once, job: TrainJob, refused: dict[str, str]) -> TrainResult:
    current = job
    while True:
        if not current.candidates:
            return TrainResult()
        try:
            return run_once(current)
        except Stalled as e:
            ids = [i for i in e.ids if i in current.ids]
            if e.kind == "rollout" and len(ids) > 1 and not current.rollout_apart:
                current = dataclasses.replace(current, rollout_apart=True)
                continue
            if len(ids) > 1:  # training: each half on its own
                second = set(ids[len(ids) // 2:])
                parts = [current.with_candidates([c for c in current.candidates if (c.id in second) == side],
                                                 current.population_size) for side in (False, True)]
                results = [_isolate(run_once, part, refused) for part in parts]
                merged = TrainResult(timing=dict(results[0].timing or results[1].timing))
                for r in results:
                    merged.candidates.update(r.candidates)
                return merged
            if not ids:
                raise
            refused[ids[0]] = (f"its reward stalls the {'rollout check' if e.kind == 'rollout' else 'training'} "
                               f"program, run alone: no progress for {e.waited_s:.0f} s")
            current = current.with_candidates([c for c in current.candidates if c.id != ids[0]], current.population_size)


def run_worker(job: TrainJob, workdir: Path, *, timeout_s: float,
               on_event: Callable[[dict], None] | None = None, policy: Policy | None = None,
               extra_env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
               stalls: StallLimits | None = None) -> TrainResult:
    """Run one job in a fresh worker process; return its result or raise WorkerError (``Stalled``
    where a program ran past its ``stalls`` limit). ``extra_env`` (only names the scrub lets through)
    and ``preexec_fn`` go to the worker process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = WorkerFiles(workdir)
    job_path, result_path, log_path = files.job, files.result, files.log
    if result_path.exists():
        result_path.unlink()
    atomic_write_json(job_path, job.to_json())
    with open(log_path, "w", encoding="utf-8") as log:
        proc = _start_worker([str(job_path), str(result_path)], log, workdir, stdin=subprocess.DEVNULL,
                             policy=policy or Policy(mode="auto", write=writable_dirs(workdir, job.compile_cache_dir)),
                             extra_env=extra_env, preexec_fn=preexec_fn)
        watch = StallWatch(stalls)
        shown = observer(on_event)

        def deliver(event: dict) -> None:
            watch.feed(event)
            shown(event)
        reader = threading.Thread(target=_pump, args=(proc, deliver, log), daemon=True)
        reader.start()
        t0 = time.monotonic()
        while True:
            try:
                rc = proc.wait(timeout=max(0.01, min(1.0, timeout_s - (time.monotonic() - t0), watch.left())))
                break
            except subprocess.TimeoutExpired:
                error = watch.overdue(t0, timeout_s, log_path)
                if error is not None:
                    kill_group(proc)
                    reader.join(5)
                    raise error from None
        reader.join(5)
    if rc != 0 and _guard_reason(proc):
        raise WorkerError(f"{_guard_reason(proc)} (log: {log_path})")
    if rc != 0:
        tail = last_line(log_path)
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
        raise WorkerError(f"training worker {how} after {time.monotonic() - t0:.0f} s: {tail} (log: {log_path})")
    if not result_path.exists():
        raise WorkerError(f"training worker wrote no result (log: {log_path})")
    return TrainResult.from_json(read_json(result_path))


def _start_worker(args: list[str], log, cwd: Path, stdin, policy: Policy,
                  extra_env: dict[str, str] | None = None, preexec_fn=None) -> subprocess.Popen:
    """A worker process with the scrubbed environment, in a session of its own (killed as a group),
    told its sandbox policy, its folder's size watched; its temporary files go beneath its own directory."""
    env = scrubbed_env({**os.environ, **(extra_env or {})})
    env[SANDBOX_ENV] = policy.to_env()
    tmp = WorkerFiles(cwd).tmp
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = env["MPLCONFIGDIR"] = str(tmp.resolve())
    proc = start_module("rewardsmith.train.worker", args, env=env, cwd=cwd, stdin=stdin, stderr=log,
                        preexec=preexec_fn)
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

    def run(self, job: TrainJob, workdir: Path, *, timeout_s: float,
            on_event: Callable[[dict], None] | None = None, stalls: StallLimits | None = None) -> TrainResult:
        """Run one job; return its result or raise WorkerError (``Stalled`` where a program ran past
        its ``stalls`` limit)."""
        on_event = observer(on_event)
        watch = StallWatch(stalls)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        # the record in ``workdir``; the worker reads and writes only beneath its own directory
        record = WorkerFiles(workdir)
        atomic_write_json(record.job, job.to_json())
        io = WorkerFiles(self.log_dir).exchange
        job_path, result_path = io.job, io.result
        if result_path.exists():
            result_path.unlink()
        atomic_write_json(job_path, job.to_json())
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
                event = self._events.get(timeout=max(0.01, min(left, watch.left())))
            except queue.Empty:
                error = watch.overdue(t0, timeout_s, self._log_path)
                if error is None:
                    continue
                self.stop()
                raise error from None
            if event is None:  # the process ended
                rc = self.proc.wait()
                guarded, self.proc = _guard_reason(self.proc), None
                if guarded:
                    raise WorkerError(f"{guarded} (log: {self._log_path})")
                how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
                raise WorkerError(f"training worker {how} after {time.monotonic() - t0:.0f} s: "
                                  f"{last_line(self._log_path)} (log: {self._log_path})")
            if event.get("event") == "job_done":
                if not event.get("ok"):
                    raise WorkerError(f"training worker failed: {event.get('error')} (log: {self._log_path})")
                if not result_path.exists():
                    raise WorkerError(f"training worker wrote no result (log: {self._log_path})")
                result = TrainResult.from_json(read_json(result_path))
                os.replace(result_path, record.result)
                return result
            if event.get("event") == "sandbox":
                self.sandbox = {k: v for k, v in event.items() if k != "event"}
            watch.feed(event)
            on_event(event)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
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
        pump_json_lines(proc.stdout, events.put, lambda line: (log.write(line + "\n"), log.flush()))


def _pump(proc: subprocess.Popen, on_event, log) -> None:
    assert proc.stdout is not None

    def deliver(event: dict | None) -> None:
        if event is not None:
            on_event(event)
    pump_json_lines(proc.stdout, deliver, lambda line: log.write(line + "\n"))


def observer(on_event: Callable[[dict], None] | None) -> Callable[[dict], None]:
    """The worker's events go to ``on_event``, which only observes (the live view): an exception
    there never stops training; the first is printed with its traceback, later ones are counted."""
    failures = [0]

    def deliver(event: dict) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:  # noqa: BLE001 - a display problem never stops training
            failures[0] += 1
            if failures[0] == 1:
                print(f"the live view failed on a worker event ({event.get('event')}); training goes on:\n"
                      + traceback.format_exc().rstrip(), file=sys.stderr)

    return deliver
