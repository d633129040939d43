"""The training worker: the only process that executes candidate code.

Run as ``python -m rewardsmith.train.worker JOB.json RESULT.json``. The orchestrator starts it with an
environment that holds no API keys (see ``isolation.child.scrubbed_env``). It loads each candidate, traces it,
rolls it out once, trains all survivors x seeds in one program, and writes RESULT.json atomically.
Progress goes to stdout as JSON lines.
"""

from __future__ import annotations

import os
import sys


def _configure_devices() -> None:
    # Both CPU cores as devices: must happen before jax is imported.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        n = max(1, int(os.environ.get("REWARDSMITH_CPU_DEVICES", "0")) or (os.cpu_count() or 1))
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_CHECKER = None  # the candidate checker process, kept for this worker's life
_NO_SPAWN = False  # set once this process may start no more processes (the sandbox's seccomp filter)
_SANDBOX: dict = {}  # what the sandbox applied to this worker
_STEP_FLOPS: dict[str, float] = {}  # the cost of one environment step, per task (check_relative_cost)


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


def run_job(job: dict) -> dict:
    import json
    import time

    from rewardsmith.validate.isolate import CheckLimits, Checker

    global _CHECKER
    t_start = time.perf_counter()
    # Every candidate is loaded and traced first in a limited process of its own; the checker's
    # start-up (once per worker) and work overlap with this process's imports and environment build.
    _CHECKER = _CHECKER or Checker()
    pending = [(c["id"], c["source"]) for c in job["candidates"]]
    limits = CheckLimits.from_json(job.get("check_limits"))
    submitted = bool(pending and job.get("schema") and job.get("max_components"))
    if submitted:
        _CHECKER.submit(pending, job["schema"], job["max_components"], limits)

    import jax
    import numpy as np

    if job.get("compile_cache_dir"):
        # the trainer is compiled once per task and settings: later runs load it from disk
        jax.config.update("jax_compilation_cache_dir", str(job["compile_cache_dir"]))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from rewardsmith.records import Validation
    from rewardsmith.tasks import get_task
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.train.ppo import PPOConfig
    from rewardsmith.train.population import Halving, split_members, train_halving, train_population
    from rewardsmith.train.stats import member_results
    from rewardsmith.validate.trace import env_step_flops, relative_cost_check, rollout_check, shape_check

    task = get_task(job["task"]["name"], job["task"].get("file"))
    task = task.with_env_overrides(job["task"].get("env"))
    task.make_env()  # environment libraries load now: some start a process at import (glfw through mujoco)
    _forbid_new_processes(jax)
    config = PPOConfig.from_dict(job["ppo"])
    seeds = [int(s) for s in job["seeds"]]
    result: dict = {"candidates": {}, "env_names": sorted(os.environ) if job.get("report_env") else None}
    if pending and not submitted:
        _CHECKER.submit(pending, task.schema.to_json(), MAX_COMPONENTS, limits)
    checked = _CHECKER.collect() if pending else {}

    validations: dict[str, Validation] = {}
    branches: dict[str, object] = {}
    env_key = json.dumps([job["task"]["name"], job["task"].get("file"), job["task"].get("env")], sort_keys=True)
    if limits.relative_cost and env_key not in _STEP_FLOPS:
        _STEP_FLOPS[env_key] = env_step_flops(task)
    step_flops = _STEP_FLOPS.get(env_key, 0.0) if limits.relative_cost else 0.0
    for cand in job["candidates"]:
        v = relative_cost_check(checked[cand["id"]], step_flops, limits.relative_cost)
        # only a candidate that loaded and traced within its limits is executed in this process
        if v.ok:
            cost = v.cost
            v, branch = shape_check(cand["source"], cand["id"], task, MAX_COMPONENTS)
            v.cost = cost  # the checker's figures stay with the candidate
        else:
            branch = None
        validations[cand["id"]] = v
        if branch is not None:
            branches[cand["id"]] = branch
        emit("shape_checked", id=cand["id"], ok=v.ok, reason=v.reason)

    ids = list(branches)
    try:
        reasons = rollout_check(task, [branches[i] for i in ids], seed=int(job.get("check_seed", 0)))
    except Exception:  # noqa: BLE001 - fall back to checking one by one to find the culprit
        reasons = []
        for i in ids:
            try:
                reasons.append(rollout_check(task, [branches[i]])[0])
            except Exception as e:  # noqa: BLE001
                from rewardsmith.validate.load import describe_exception

                reasons.append(f"rollout failed: {describe_exception(e, i)}")
    for i, reason in zip(ids, reasons):
        if reason is not None:
            validations[i] = Validation(ok=False, stage="trace", reason=reason)
            del branches[i]
        emit("rollout_checked", id=i, ok=reason is None, reason=reason or "")
    t_checked = time.perf_counter()

    for cid, v in validations.items():
        result["candidates"][cid] = {"validation": v.__dict__, "members": []}

    ids = list(branches)
    if ids:
        member_branch = [b for b in range(len(ids)) for _ in seeds]
        member_seed = [s for _ in ids for s in seeds]
        emit("training", candidates=ids, members=len(member_branch), devices=len(jax.devices()))
        def progress(done: int, total: int, metrics: dict) -> None:
            eps = metrics["episodes"].sum(1)
            fit = np.where(eps > 0, metrics["fitness_sum"].sum(1) / np.maximum(eps, 1), np.nan)
            fitness = {}
            for k, cid in enumerate(ids):
                vals = fit[[m for m, b in enumerate(member_branch) if b == k]]
                vals = vals[np.isfinite(vals)]
                fitness[cid] = round(float(vals.mean()), 4) if vals.size else None
            emit("progress", updates=done, of=total, fitness=fitness)

        budget = job.get("budget") or {}
        fns = [branches[i] for i in ids]
        if budget.get("kind") == "halving":
            halving = Halving(eta=int(budget.get("eta", 2)), rungs=int(budget.get("rungs", 3)),
                              protected=tuple(k for k, cid in enumerate(ids) if cid in set(budget.get("protected", []))),
                              sizes=tuple(int(x) for x in budget.get("sizes", [])))

            def rung(r: int, update: int, of: int, kept: dict, stopped: dict) -> None:
                emit("rung", rung=r, rungs=halving.rungs, update=update, of=of,
                     kept={ids[b]: round(f, 4) for b, f in kept.items()},
                     stopped={ids[b]: round(f, 4) for b, f in stopped.items()})

            outs, timing = train_halving(task, config, fns, member_branch, member_seed, halving,
                                         on_chunk=progress, on_rung=rung)
        else:
            out, timing = train_population(task, config, fns, member_branch, member_seed,
                                           on_chunk=progress, population_size=job.get("population_size"))
            outs = split_members(out, len(member_branch))
        for one, b, s in zip(outs, member_branch, member_seed):
            cid = ids[b]
            result["candidates"][cid]["members"].append(
                member_results(one, s, validations[cid].components, task, config))
        result["timing"] = {**timing, "check_s": t_checked - t_start}
        emit("trained", **result["timing"])
        _attach_rollouts(task, outs, ids, member_branch, member_seed, validations, result)
    result["timing"] = {**result.get("timing", {}), "total_s": time.perf_counter() - t_start}
    return result


def _attach_rollouts(task, outs, ids, member_branch, member_seed, validations, result) -> None:
    """Each trained candidate's rollout (its first usable seed's evaluation episode) for viewing."""
    import numpy as np

    from rewardsmith.train.rollout import rollout_from_trace

    env = task.make_env()
    sk = task.skeleton(env)
    dt = float(getattr(env, "dt", 0.05) or 0.05)
    for b, cid in enumerate(ids):
        members = [m for m, mb in enumerate(member_branch) if mb == b]
        recs = result["candidates"][cid]["members"]
        oks = [m for m, rec in zip(members, recs) if rec["ok"]]
        if not oks:
            continue
        trace = {k: np.asarray(v) for k, v in outs[oks[0]]["eval"]["trace"].items()}
        try:
            result["candidates"][cid]["rollout"] = rollout_from_trace(
                trace, field_names=list(task.schema.names), component_names=list(validations[cid].components),
                parents=sk[1] if sk else None, dt=dt, seed=member_seed[oks[0]])
        except Exception as e:  # noqa: BLE001 - a viewer problem never fails training
            emit("rollout_failed", id=cid, reason=f"{type(e).__name__}: {e}")


def serve() -> int:
    """The warm worker: one job per stdin line (``{"job": PATH, "result": PATH}``), answered with a
    ``job_done`` event, until stdin closes. Compiled trainers, the environment and the checker stay
    loaded between jobs. A job that raises is reported (one line) and the worker serves on."""
    import json
    import traceback

    from rewardsmith.rundir import atomic_write_json, read_json

    emit("ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        paths = json.loads(line)
        try:
            atomic_write_json(paths["result"], run_job(read_json(paths["job"])))
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

    job = read_json(argv[0])
    result = run_job(job)
    atomic_write_json(argv[1], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
