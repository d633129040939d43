"""Training a list of candidates in the worker: the job, the worker's events shown live, and the
results (validation, per-seed statistics, rollouts) written back into each candidate's record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rewardsmith.records import Candidate, MemberResult, Validation
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.tasks import Task
from rewardsmith.contract import MAX_COMPONENTS
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.isolation.sandbox import sandbox_policy
from rewardsmith.train.runner import WarmWorker, WorkerError, run_worker
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



def train_candidates(rd: RunDir, gen: int, attempt: int, task: Task, ppo: PPOConfig, seeds: list[int],
           cands: list[Candidate], worker: WorkerSettings, display, process: WarmWorker | None = None,
           workdir: Path | None = None,
           rollout_dir: Path | None = None, budget: dict | None = None) -> str:
    """Train ``cands`` in one worker; rollouts go beside each candidate's record, or, with
    ``rollout_dir``, into that folder with an offline viewer and a GIF each. ``budget`` (kind
    ``halving`` with eta, rungs, protected ids and stage sizes) stops weak candidates early."""
    by_id = {c.id: c for c in cands}
    for c in cands:
        c.status = "checking"
    job = {
        "task": {"name": task.name, "file": task.source_file if task.source_file else None,
                 "env": dict(task.env_config)},
        "schema": task.schema.to_json(),
        "max_components": MAX_COMPONENTS,
        "check_limits": worker.limits.to_json(),
        "compile_cache_dir": worker.compile_cache_dir,
        "ppo": dataclasses.asdict(ppo),
        "seeds": seeds,
        "candidates": [{"id": c.id, "source": c.source} for c in cands],
        "check_seed": gen,
        # the run's usual generation size: smaller generations are padded to it, so that every
        # generation of the run shares one compiled trainer
        "population_size": worker.population_size,
        "budget": budget,
    }

    def on_event(ev: dict) -> None:
        kind = ev.get("event")
        if kind in ("shape_checked", "rollout_checked") and not ev.get("ok") and ev.get("id") in by_id:
            by_id[ev["id"]].status = "rejected"
            by_id[ev["id"]].validation = Validation(ok=False, stage="trace", reason=ev.get("reason", ""))
        elif kind == "training":
            for cid in ev.get("candidates", []):
                if cid in by_id:
                    by_id[cid].status = "training"
                    if "shard" in ev:  # executor=ray: shown live, replaced by the full placement at the end
                        by_id[cid].placement = {"executor": "ray", "shard": ev["shard"], "node_id": ev.get("node_id"),
                                                "node_ip": ev.get("node_ip")}
            where = f" (shard {ev['shard']} on node {ev.get('node_ip')} {str(ev.get('node_id'))[:8]})" if "shard" in ev else ""
            display.message(f"training {ev.get('members')} members in one program on {ev.get('devices')} device(s)"
                            + where)
        elif kind == "progress":
            display.progress(int(ev.get("updates", 0)), int(ev.get("of", 0)), dict(ev.get("fitness") or {}))
        elif kind == "rung":
            stopped = ", ".join(f"{cid} ({f:.4g})" for cid, f in (ev.get("stopped") or {}).items())
            display.message(f"rung {ev.get('rung')} of {ev.get('rungs')} (update {ev.get('update')} of {ev.get('of')}): "
                            f"{len(ev.get('kept') or {})} candidate(s) train on"
                            + (f"; stopped {stopped}" if stopped else ""))
        elif kind == "trained":
            display.message(f"compiled in {ev.get('compile_s', 0):.1f} s (rewards {ev.get('reward_compile_s', 0):.1f} s), "
                            f"trained in {ev.get('train_s', 0):.1f} s")
        display.candidates(cands)

    workdir = workdir or rd.worker_attempt_dir(gen, attempt)
    try:
        if process is not None:
            result = process.run(job, workdir, timeout_s=worker.timeout_s, on_event=on_event)
        else:
            result = run_worker(job, workdir, timeout_s=worker.timeout_s, on_event=on_event,
                                policy=sandbox_policy(worker, workdir, task.source_file))
    except WorkerError as e:
        _fail(cands, str(e))
        display.message(str(e))
        display.candidates(cands)
        return str(e)
    for cid, reason in (result.get("failed") or {}).items():  # executor=ray: a shard that failed
        _fail([by_id[cid]], reason)
    for cid, place in (result.get("placement") or {}).items():
        by_id[cid].placement = place
    for cid, res in result["candidates"].items():
        c = by_id[cid]
        if res.get("rollout"):
            if rollout_dir is not None:
                _save_rollout(rollout_dir, cid, res["rollout"], task, display)
            else:
                atomic_write_json(rd.rollout_path(c), res["rollout"])
        c.validation = Validation(**res["validation"])
        c.members = [MemberResult(**m) for m in res["members"]]
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
    display.candidates(cands)
    return ""


def _fail(cands: list[Candidate], reason: str) -> None:
    """Their worker (or shard) failed: recorded as failed with the reason, nothing trained."""
    for c in cands:
        c.status = "failed"
        c.validation = c.validation or Validation(ok=False, stage="trace", reason="not checked: worker failed")
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
