"""Training a list of candidates in the worker: the job, the worker's events shown live, and the
results (validation, per-seed statistics, rollouts) written back into each candidate's record."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from rewardsmith.records import Candidate, Trajectories, Validation
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.tasks import Task
from rewardsmith.contract import MAX_COMPONENTS
from rewardsmith.train.job import HalvingBudget, JobCandidate, PrefilterJob, TaskRef, TrainJob, TrainResult
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.isolation.sandbox import sandbox_policy
from rewardsmith.train.runner import StallLimits, WarmWorker, WorkerError, run_isolating_stalls, run_worker
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
    # when one candidate is taken as stalling its program: the rollout check, a training chunk
    stalls: StallLimits = StallLimits(rollout_s=60.0, training_s=300.0)



@dataclasses.dataclass(frozen=True)
class Training:
    """How a job trains, apart from its candidates: the task and its PPO settings, the seeds, the
    worker's settings, the warm worker or executor to run on (None: a fresh worker per job) and the
    budget (None: every candidate trains the whole budget; else successive halving)."""

    task: Task
    ppo: PPOConfig
    seeds: tuple[int, ...]
    worker: WorkerSettings
    process: WarmWorker | None = None
    budget: HalvingBudget | None = None
    prefilter: PrefilterJob | None = None

    def job(self, cands: list[Candidate], check_seed: int) -> TrainJob:
        w = self.worker
        return TrainJob(task=TaskRef.of(self.task), schema=self.task.schema.to_json(), max_components=MAX_COMPONENTS,
                        check_limits=w.limits, compile_cache_dir=w.compile_cache_dir, ppo=self.ppo,
                        seeds=tuple(self.seeds), candidates=tuple(JobCandidate(id=c.id, source=c.source) for c in cands),
                        check_seed=check_seed, population_size=w.population_size, budget=self.budget,
                        prefilter=self.prefilter)

    def run(self, job: TrainJob, workdir: Path, on_event) -> TrainResult:
        """The job on the warm worker or executor, or in a fresh worker; a rollout check that stalls
        fails its candidate alone (``run_isolating_stalls``)."""
        w = self.worker

        def run_once(one: TrainJob) -> TrainResult:
            if self.process is not None:
                return self.process.run(one, workdir, timeout_s=w.timeout_s, on_event=on_event,
                                        stalls=w.stalls)
            return run_worker(one, workdir, timeout_s=w.timeout_s, on_event=on_event,
                              policy=sandbox_policy(w, workdir, self.task.source_file),
                              stalls=w.stalls)
        return run_isolating_stalls(run_once, job)


# where a trained candidate's rollout goes: (candidate, rollout)
RolloutSink = Callable[[Candidate, dict], None]


def train_candidates(rd: RunDir, training: Training, cands: list[Candidate], display, *, workdir: Path,
                     check_seed: int = 0, rollouts: RolloutSink | None = None, keep_trajectories: bool = True) -> str:
    """Train ``cands`` in one worker (its files in ``workdir``; ``check_seed`` seeds the rollout
    check); each trained candidate's rollout goes to ``rollouts`` (default: beside its record), and
    with ``keep_trajectories`` its evaluation episodes beside its record (the search's candidates;
    not the finals' or the final evaluation's retraining). Returns the worker's failure, or ""."""
    for c in cands:
        c.status = "checking"
    live = LiveView(cands, display)
    try:
        result = training.run(training.job(cands, check_seed), workdir, live.on_event)
    except WorkerError as e:
        _fail(cands, str(e), live.verdicts)
        display.message(str(e))
        display.candidates(cands)
        return str(e)
    apply_result(result, cands, rollouts or (lambda c, rollout: atomic_write_json(rd.rollout_path(c), rollout)),
                 (lambda c, t: t.save(rd.trajectories_path(c))) if keep_trajectories else (lambda c, t: None))
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
        elif kind == "prefiltered" and ev.get("skipped"):
            for cid in ev["skipped"]:
                self.status[cid] = "skipped"
            self.display.message(f"pre-filter: {len(ev['skipped'])} candidate(s) not trained: " + "; ".join(
                f"{cid}: {reason}" for cid, reason in ev["skipped"].items()))
        elif kind == "trained":
            self.display.message(f"compiled in {ev.get('compile_s', 0):.1f} s (rewards {ev.get('reward_compile_s', 0):.1f} s), "
                                 f"trained in {ev.get('train_s', 0):.1f} s")
        self.display.candidates([self._view(c) for c in self.cands])

    def _view(self, c: Candidate) -> Candidate:
        if c.id not in self.status:
            return c
        return dataclasses.replace(c, status=self.status[c.id], validation=self.verdicts.get(c.id, c.validation),
                                   placement=self.placement.get(c.id, c.placement))


def apply_result(result: TrainResult, cands: list[Candidate], rollouts: RolloutSink,
                 trajectories: Callable[[Candidate, Trajectories], None] = lambda c, t: None) -> None:
    """The job's result into each candidate's record: validation, members, status, fitness; each
    rollout handed to ``rollouts``, each candidate's evaluation episodes to ``trajectories``."""
    by_id = {c.id: c for c in cands}
    for cid, reason in result.failed.items():  # executor=ray: a shard that failed
        _fail([by_id[cid]], reason)
    for cid, place in result.placement.items():
        by_id[cid].placement = place
    for cid, res in result.candidates.items():
        c = by_id[cid]
        if res.rollout:
            rollouts(c, res.rollout)
        if res.trajectories is not None:
            trajectories(c, res.trajectories)
        c.validation = res.validation
        c.members = list(res.members)
        c.prefilter = res.prefilter
        if c.members:
            c.env_steps = sum(int(m.env_steps or 0) for m in c.members)
            c.rung = max((m.rung for m in c.members if m.rung is not None), default=None)
            c.rungs = c.members[0].rungs
        if not c.validation.ok:
            c.status = "rejected"
            continue
        if c.prefilter and c.prefilter.get("skip"):
            c.status = "skipped"
            c.note = (c.note + " | " if c.note else "") + f"not trained (prefilter): {c.prefilter.get('reason')}"
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
