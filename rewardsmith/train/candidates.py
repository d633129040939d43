"""Training a list of candidates in the worker: the job, the worker's events shown live, and the
results (validation, per-seed statistics, rollouts) written back into each candidate's record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rewardsmith.records import Candidate, Validation
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.tasks import Task
from rewardsmith.contract import MAX_COMPONENTS
from rewardsmith.train.job import HalvingBudget, JobCandidate, TaskRef, TrainJob, TrainResult
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.isolation.sandbox import sandbox_policy
from rewardsmith.train.runner import WarmWorker, WorkerError, run_checking_rollouts, run_worker
from rewardsmith.validate.isolate import CheckLimits


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """How candidate code is run: the training worker's timeout and each candidate's check limits."""

    timeout_s: float
    limits: CheckLimits
    compile_cache_dir: str | None  # JAX's persistent compilation cache; None = off
    population_size: int | None = None  # members of a full generation (candidates and baselines x seeds)
    sandbox: str = "auto"  # the worker's OS isolation: auto, strict or off (see isolation/sandbox.py)
    sandbox_memory_mb: int = 0  # the worker's address-space cap (0: none)
    sandbox_file_mb: int = 4096  # the largest file the worker may write
    sandbox_folder_mb: int = 2048  # what the worker's own folder may hold in all (watched from outside)
    rollout_timeout_s: float = 60.0  # what running one compiled rollout-check program may take; 0: no bound



def train_candidates(rd: RunDir, gen: int, attempt: int, task: Task, ppo: PPOConfig, seeds: list[int],
           cands: list[Candidate], worker: WorkerSettings, display, process: WarmWorker | None = None,
           workdir: Path | None = None,
           rollout_dir: Path | None = None, budget: HalvingBudget | None = None) -> str:
    """Train ``cands`` in one worker; rollouts go beside each candidate's record, or, with
    ``rollout_dir``, into that folder with an offline viewer and a GIF each. ``budget``
    (successive halving) stops weak candidates early. Returns the worker's failure, or ""."""
    for c in cands:
        c.status = "checking"
    job = TrainJob(task=TaskRef.of(task), schema=task.schema.to_json(), max_components=MAX_COMPONENTS,
                   check_limits=worker.limits, compile_cache_dir=worker.compile_cache_dir, ppo=ppo,
                   seeds=tuple(seeds), candidates=tuple(JobCandidate(id=c.id, source=c.source) for c in cands),
                   check_seed=gen, population_size=worker.population_size, budget=budget)
    live = LiveView(cands, display)
    workdir = workdir or rd.worker_attempt_dir(gen, attempt)

    def run_once(job: TrainJob) -> TrainResult:
        if process is not None:
            return process.run(job, workdir, timeout_s=worker.timeout_s, on_event=live.on_event,
                               rollout_timeout_s=worker.rollout_timeout_s)
        return run_worker(job, workdir, timeout_s=worker.timeout_s, on_event=live.on_event,
                          policy=sandbox_policy(worker, workdir, task.source_file),
                          rollout_timeout_s=worker.rollout_timeout_s)
    try:
        result = run_checking_rollouts(run_once, job)
    except WorkerError as e:
        _fail(cands, str(e), live.verdicts)
        display.message(str(e))
        display.candidates(cands)
        return str(e)
    apply_result(result, cands, rd, task, display, rollout_dir)
    display.candidates(cands)
    return ""


class LiveView:
    """The worker's events, shown as they come: it only observes. Which candidates the checks
    refused (and why) and which train are kept here for the live table; the records change only
    from the job's result (or its failure)."""

    def __init__(self, cands: list[Candidate], display):
        self.cands = cands
        self.display = display
        self.status: dict[str, str] = {}
        self.verdicts: dict[str, Validation] = {}  # refusals the worker reported before any result
        self.placement: dict[str, dict] = {}

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind in ("shape_checked", "rollout_checked") and not ev.get("ok"):
            self.status[ev.get("id")] = "rejected"
            self.verdicts[ev.get("id")] = Validation(ok=False, stage="trace", reason=ev.get("reason", ""))
        elif kind == "training":
            for cid in ev.get("candidates", []):
                self.status[cid] = "training"
                if "shard" in ev:  # executor=ray: shown live, replaced by the full placement at the end
                    self.placement[cid] = {"executor": "ray", "shard": ev["shard"], "node_id": ev.get("node_id"),
                                           "node_ip": ev.get("node_ip")}
            where = f" (shard {ev['shard']} on node {ev.get('node_ip')} {str(ev.get('node_id'))[:8]})" if "shard" in ev else ""
            self.display.message(f"training {ev.get('members')} members in one program on {ev.get('devices')} "
                                 "device(s)" + where)
        elif kind == "progress":
            self.display.progress(int(ev.get("updates", 0)), int(ev.get("of", 0)), dict(ev.get("fitness") or {}))
        elif kind == "rung":
            stopped = ", ".join(f"{cid} ({f:.4g})" for cid, f in (ev.get("stopped") or {}).items())
            self.display.message(f"rung {ev.get('rung')} of {ev.get('rungs')} (update {ev.get('update')} of "
                                 f"{ev.get('of')}): {len(ev.get('kept') or {})} candidate(s) train on"
                                 + (f"; stopped {stopped}" if stopped else ""))
        elif kind == "trained":
            self.display.message(f"compiled in {ev.get('compile_s', 0):.1f} s (rewards {ev.get('reward_compile_s', 0):.1f} s), "
                                 f"trained in {ev.get('train_s', 0):.1f} s")
        self.display.candidates([self._view(c) for c in self.cands])

    def _view(self, c: Candidate) -> Candidate:
        if c.id not in self.status:
            return c
        return dataclasses.replace(c, status=self.status[c.id], validation=self.verdicts.get(c.id, c.validation),
                                   placement=self.placement.get(c.id, c.placement))


def apply_result(result: TrainResult, cands: list[Candidate], rd: RunDir, task: Task, display,
                 rollout_dir: Path | None = None) -> None:
    """The job's result into each candidate's record: validation, members, status, fitness; rollouts saved."""
    by_id = {c.id: c for c in cands}
    for cid, reason in result.failed.items():  # executor=ray: a shard that failed
        _fail([by_id[cid]], reason)
    for cid, place in result.placement.items():
        by_id[cid].placement = place
    for cid, res in result.candidates.items():
        c = by_id[cid]
        if res.rollout:
            if rollout_dir is not None:
                _save_rollout(rollout_dir, cid, res.rollout, task, display)
            else:
                atomic_write_json(rd.rollout_path(c), res.rollout)
        c.validation = res.validation
        c.members = list(res.members)
        if c.members:
            c.env_steps = sum(int(m.env_steps or 0) for m in c.members)
            c.rung = max((m.rung for m in c.members if m.rung is not None), default=None)
            c.rungs = c.members[0].rungs
        if not c.validation.ok:
            c.status = "rejected"
            continue
        fits = [m.fitness for m in c.members if m.ok and m.fitness is not None]
        if fits:
            c.status = "trained"
            c.fitness = float(np.mean(fits))
            c.fitness_std = float(np.std(fits))
        else:
            c.status = "failed"


def _fail(cands: list[Candidate], reason: str, verdicts: dict[str, Validation] | None = None) -> None:
    """Their worker (or shard) failed: recorded as failed with the reason, nothing trained (a check's
    refusal the worker reported before it failed is kept)."""
    for c in cands:
        c.status = "failed"
        c.validation = (verdicts or {}).get(c.id) or c.validation or Validation(
            ok=False, stage="trace", reason="not checked: worker failed")
        c.members = []
        c.note = (c.note + " | " if c.note else "") + f"worker failure: {reason}"


def _save_rollout(directory: Path, cid: str, rollout: dict, task: Task, display) -> None:
    """<id>.json, an offline viewer (<id>.html) and, for tasks that draw themselves, an animated GIF."""
    from rewardsmith.report.rollout_view import write_gif, write_viewer

    atomic_write_json(directory / f"{cid}.json", rollout)
    write_viewer(rollout, directory / f"{cid}.html", f"{task.name} · {cid}")
    if rollout.get("frames"):
        try:
            write_gif(rollout, directory / f"{cid}.gif")
        except Exception as e:  # noqa: BLE001 - the viewer is written; the GIF is a convenience
            display.message(f"rollout GIF for {cid} not written: {type(e).__name__}: {e}")
