"""The training worker: the only process that executes candidate code.

Run as ``python -m rewardsmith.train.worker JOB.json RESULT.json``. The orchestrator starts it with an
environment that holds no API keys (see ``isolation.child.scrubbed_env``). It loads each candidate, traces it,
rolls it out once, trains all survivors x seeds in one program, and writes RESULT.json atomically.
Progress goes to stdout as JSON lines.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rewardsmith.train.job import TrainJob, TrainResult


def _configure_devices() -> None:
    # Both CPU cores as devices: must happen before jax is imported.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        n = max(1, int(os.environ.get("REWARDSMITH_CPU_DEVICES", "0")) or (os.cpu_count() or 1))
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_CHECKER = None  # the candidate checker process, kept for this worker's life
_NO_SPAWN = False  # set once this process may start no more processes (the sandbox's seccomp filter)
_SANDBOX: dict = {}  # what the sandbox applied to this worker
_STEP_FLOPS: dict[tuple, float] = {}  # the cost of one environment step, per TaskRef.key (check_relative_cost)


def emit(event: str, **data) -> None:
    import json

    print(json.dumps({"event": event, **data}), flush=True)


def _forbid_new_processes(jax) -> None:
    """Once the checker runs, this process starts no new one (seccomp; CPU only: GPU compilers may
    need subprocesses). Called after the environment is built and before any candidate code runs."""
    global _NO_SPAWN
    checker_up = _CHECKER.proc is not None and _CHECKER.proc.poll() is None
    if _SANDBOX.get("mode", "off") != "off" and not _NO_SPAWN and checker_up and jax.default_backend() == "cpu":
        from rewardsmith.isolation.sandbox import forbid_new_processes

        _NO_SPAWN = forbid_new_processes()
        _SANDBOX["processes"] = _SANDBOX.get("processes", "none") + ("; seccomp: no new processes, no unix sockets, "
                                                                   "other ABIs killed, every thread" if _NO_SPAWN else "")
        emit("sandbox", **_SANDBOX)


def run_job(job: TrainJob) -> TrainResult:
    """Check every candidate of ``job`` (isolated load and trace, then ``validate.admit``), train the
    admitted ones x seeds in one program, and return what became of each."""
    import time

    from rewardsmith.train.job import CandidateOutcome, TrainResult

    t_start = time.perf_counter()
    early = _submit_checks(job, job.schema)  # the checker works while jax loads and the env is built
    jax = _load_jax(job.compile_cache_dir)
    import rewardsmith.train.population  # noqa: F401 - the trainer's modules load before any candidate's code
    task = job.task.load()
    task.make_env()  # environment libraries load now: some start a process at import (glfw through mujoco)
    _forbid_new_processes(jax)
    if not early:
        _submit_checks(job, task.schema.to_json())
    admitted = _admit(job, task)
    result = TrainResult(candidates={cid: CandidateOutcome(validation=v) for cid, v in admitted.validations.items()})
    branches = _prefilter(job, task, admitted.branches, result)
    t_checked = time.perf_counter()
    if branches:
        outs, members, timing = _train(job, task, branches)
        for one, (cid, seed) in zip(outs, members):
            result.candidates[cid].members.append(_member(one, seed, admitted.validations[cid].components, task, job))
        result.timing = {**timing, "check_s": t_checked - t_start}
        emit("trained", **result.timing)
        _attach_rollouts(task, outs, members, result)
        _attach_trajectories(outs, members, result)
    result.timing = {**result.timing, "total_s": time.perf_counter() - t_start}
    return result


def _submit_checks(job, schema: dict | None) -> bool:
    """Every candidate is loaded and traced first in a limited process of its own (the checker, started
    once per worker); returns whether the job's candidates were submitted."""
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.validate.isolate import Checker

    global _CHECKER
    _CHECKER = _CHECKER or Checker()
    if not job.candidates or not schema:
        return not job.candidates
    _CHECKER.submit([(c.id, c.source) for c in job.candidates], schema, job.max_components or MAX_COMPONENTS,
                    job.check_limits)
    return True


def _load_jax(compile_cache_dir: str | None):
    import jax

    if compile_cache_dir:
        # the trainer is compiled once per task and settings: later runs load it from disk
        jax.config.update("jax_compilation_cache_dir", str(compile_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return jax


def _admit(job, task):
    """The checker's verdicts, then the admission stages in this process (``validate.admit``)."""
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.validate.admit import admit
    from rewardsmith.validate.trace import env_step_flops

    checked = _CHECKER.collect() if job.candidates else {}
    relative = job.check_limits.relative_cost
    if relative and job.task.key not in _STEP_FLOPS:
        _STEP_FLOPS[job.task.key] = env_step_flops(task)
    return admit([(c.id, c.source) for c in job.candidates], task, checked, max_components=MAX_COMPONENTS,
                 step_flops=_STEP_FLOPS.get(job.task.key, 0.0) if relative else 0.0, relative_cost=relative,
                 rollout_seed=job.check_seed, rollout_apart=job.rollout_apart,
                 on_stage=lambda stage, cid, ok, reason: emit(stage, id=cid, ok=ok, reason=reason),
                 on_rollout=lambda ids: emit("rollout_checking", ids=ids))


def _prefilter(job, task, branches: dict, result) -> dict:
    """``prefilter=``: the admitted candidates judged on the job's stored episodes; returns those that
    train (every one, unless the mode skips some); each verdict goes on its outcome."""
    if job.prefilter is None or not job.prefilter.settings.on or not branches:
        return branches
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.validate.prefilter import judge
    from rewardsmith.validate.trace import shape_check

    archive = {}
    for c in job.prefilter.archive:  # earlier candidates, admitted in their own generation
        v, branch = shape_check(c.source, c.id, task, MAX_COMPONENTS)
        if branch is not None:
            archive[c.id] = branch
    verdicts = judge(branches, archive, job.prefilter.reference, task.schema, job.prefilter.settings,
                     protected=set(job.prefilter.protected))
    for cid, verdict in verdicts.items():
        result.candidates[cid].prefilter = verdict.to_json()
    emit("prefiltered", skipped={cid: v.reason for cid, v in verdicts.items() if v.skip})
    return {cid: b for cid, b in branches.items() if not verdicts[cid].skip}


def _train(job, task, branches: dict) -> tuple[list[dict], list[tuple[str, int]], dict]:
    """All admitted candidates x seeds as one population (uniform budget or successive halving): one
    output per member, each member's (candidate id, seed), and the trainer's timing."""
    import jax

    from rewardsmith.train.population import Halving, split_members, train_halving, train_population

    ids = list(branches)
    member_branch = [b for b in range(len(ids)) for _ in job.seeds]
    member_seed = [int(s) for _ in ids for s in job.seeds]
    emit("training", candidates=ids, members=len(member_branch), devices=len(jax.devices()))
    progress = _progress_events(ids, member_branch)
    fns = [branches[i] for i in ids]
    if job.budget is not None:
        halving = Halving(eta=job.budget.eta, rungs=job.budget.rungs, sizes=job.budget.sizes,
                          protected=tuple(k for k, cid in enumerate(ids) if cid in set(job.budget.protected)))

        def rung(r: int, update: int, of: int, kept: dict, stopped: dict) -> None:
            emit("rung", rung=r, rungs=halving.rungs, update=update, of=of,
                 kept={ids[b]: round(f, 4) for b, f in kept.items()},
                 stopped={ids[b]: round(f, 4) for b, f in stopped.items()})

        outs, timing = train_halving(task, job.ppo, fns, member_branch, member_seed, halving,
                                     on_chunk=progress, on_rung=rung)
    else:
        out, timing = train_population(task, job.ppo, fns, member_branch, member_seed,
                                       on_chunk=progress, population_size=job.population_size)
        outs = split_members(out, len(member_branch))
    return outs, [(ids[b], s) for b, s in zip(member_branch, member_seed)], timing


def _progress_events(ids: list[str], member_branch: list[int]):
    """A callback for the trainer's chunks: each candidate's mean fitness so far, as a ``progress`` event."""
    import numpy as np

    rows = {cid: [m for m, b in enumerate(member_branch) if b == k] for k, cid in enumerate(ids)}

    def progress(done: int, total: int, metrics: dict) -> None:
        eps = metrics["episodes"].sum(1)
        fit = np.where(eps > 0, metrics["fitness_sum"].sum(1) / np.maximum(eps, 1), np.nan)
        fitness = {}
        for cid, members in rows.items():
            vals = fit[members]
            vals = vals[np.isfinite(vals)]
            fitness[cid] = round(float(vals.mean()), 4) if vals.size else None
        emit("progress", updates=done, of=total, fitness=fitness)

    return progress


def _member(out: dict, seed: int, components: list[str], task, job):
    from rewardsmith.train.stats import member_results

    return member_results(out, seed, components, task, job.ppo)


def _first_usable(outs: list[dict], members: list[tuple[str, int]], result):
    """(candidate id, outcome, its first usable seed's output, that seed) for each candidate that trained."""
    for cid, outcome in result.candidates.items():
        mine = [(out, seed) for out, (c, seed) in zip(outs, members) if c == cid]
        oks = [(out, seed) for (out, seed), rec in zip(mine, outcome.members) if rec.ok]
        if oks:
            yield cid, outcome, oks[0][0], oks[0][1]


def _attach_rollouts(task, outs: list[dict], members: list[tuple[str, int]], result) -> None:
    """Each trained candidate's rollout (its first usable seed's evaluation episode) for viewing."""
    import numpy as np

    from rewardsmith.train.rollout import rollout_from_trace

    env = task.make_env()
    sk = task.skeleton(env)
    dt = float(getattr(env, "dt", 0.05) or 0.05)
    for cid, outcome, out, seed in _first_usable(outs, members, result):
        trace = {k: np.asarray(v) for k, v in out["eval"]["trace"].items()}
        try:
            outcome.rollout = rollout_from_trace(
                trace, field_names=list(task.schema.names), component_names=list(outcome.validation.components),
                parents=sk[1] if sk else None, dt=dt, seed=seed)
        except Exception as e:  # noqa: BLE001 - a viewer problem never fails training
            emit("rollout_failed", id=cid, reason=f"{type(e).__name__}: {e}")


def _attach_trajectories(outs: list[dict], members: list[tuple[str, int]], result) -> None:
    """Each trained candidate's sampled evaluation episodes (its first usable seed's)."""
    import numpy as np

    from rewardsmith.records import Trajectories

    for _, outcome, out, _ in _first_usable(outs, members, result):
        s = out["eval"]["sample"]
        outcome.trajectories = Trajectories(
            state={k: np.asarray(v, np.float32) for k, v in s["state"]._asdict().items()},
            next_state={k: np.asarray(v, np.float32) for k, v in s["next_state"]._asdict().items()},
            action=np.asarray(s["action"]), live=np.asarray(s["live"], np.float32),
            fitness_step=np.asarray(s["fitness_step"], np.float32), fitness=np.asarray(s["fitness"], np.float32),
            stride=int(s["stride"]))


def serve() -> int:
    """The warm worker: one job per stdin line (``{"job": PATH, "result": PATH}``), answered with a
    ``job_done`` event, until stdin closes. Compiled trainers, the environment and the checker stay
    loaded between jobs. A job that raises is reported (one line) and the worker serves on."""
    import json
    import traceback

    from rewardsmith.rundir import atomic_write_json, read_json
    from rewardsmith.train.job import TrainJob

    emit("ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        paths = json.loads(line)
        try:
            atomic_write_json(paths["result"], run_job(TrainJob.from_json(read_json(paths["job"]))).to_json())
            emit("job_done", ok=True)
        except Exception as e:  # noqa: BLE001 - the orchestrator fails this job's members with the reason
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            emit("job_done", ok=False, error=f"{type(e).__name__}: {msg}"[:400])
            if _NO_SPAWN and (_CHECKER is None or _CHECKER.proc is None or _CHECKER.proc.poll() is not None):
                return 3  # the checker is gone and this process may not start another: a fresh worker will
    return 0


def _enter_sandbox() -> None:
    """Network, process, filesystem and resource isolation, before anything heavy is imported."""
    from rewardsmith.isolation.sandbox import Policy, enter

    _SANDBOX.update(enter(Policy.from_env()))
    _SANDBOX["environment"] = sorted(os.environ)  # the names (never the values) this process holds
    emit("sandbox", **_SANDBOX)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--serve"], []) or len(argv) == 2:
        _enter_sandbox()
    if argv == ["--serve"]:
        _configure_devices()
        return serve()
    if len(argv) != 2:
        print("usage: python -m rewardsmith.train.worker JOB.json RESULT.json | --serve", file=sys.stderr)
        return 2
    _configure_devices()
    from rewardsmith.rundir import atomic_write_json, read_json
    from rewardsmith.train.job import TrainJob

    result = run_job(TrainJob.from_json(read_json(argv[0])))
    atomic_write_json(argv[1], result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
