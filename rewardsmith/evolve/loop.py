"""The search loop: propose -> validate -> train (one program) -> evaluate -> reflect, N times.

``run(cfg, run_dir)`` is a plain function (the hydra entry point is a thin shell over it). The run
directory is the source of truth: every candidate, every generation and the summary are written
atomically as soon as they are known.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rewardsmith.errors import UserError
from rewardsmith.export import write_best_reward
from rewardsmith.feedback.records import SELECTION_MODES, load_feedback
from rewardsmith.propose import make_proposer
from rewardsmith.propose.base import ProposalContext
from rewardsmith.records import Candidate, GenerationRecord, Validation, candidate_id
from rewardsmith.reflect import generation_reflection
from rewardsmith.rundir import RunDir, atomic_write_json, move_aside, read_json, user_cache_dir
from rewardsmith.tasks import Task, UnknownTaskError, get_task
from rewardsmith.train.ppo import MAX_COMPONENTS, PPOConfig
from rewardsmith.train.runner import WarmWorker, WorkerError, run_worker
from rewardsmith.validate.isolate import CheckLimits
from rewardsmith.validate.static import check_source

BASELINE_IDS = {"human": "baseline-human", "sparse": "baseline-sparse"}


def _plain(cfg: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def resolve_task(cfg: Mapping[str, Any]) -> Task:
    tcfg = cfg.get("task") or {}
    try:
        return get_task(tcfg.get("name", ""), tcfg.get("file")).with_env_overrides(env_overrides(cfg))
    except UnknownTaskError as e:
        raise UserError(str(e)) from None
    except (FileNotFoundError, ValueError, TypeError, ImportError, AttributeError) as e:
        raise UserError(f"cannot load task: {e}") from None


def env_overrides(cfg: Mapping[str, Any]) -> dict:
    tcfg = cfg.get("task") or {}
    return {"physics": tcfg["physics"]} if tcfg.get("physics") else {}


def ppo_config(task: Task, cfg: Mapping[str, Any]) -> PPOConfig:
    overrides = {k: v for k, v in (cfg.get("train") or {}).items() if v is not None and k != "preset"}
    preset = (cfg.get("train") or {}).get("preset")
    if preset and preset not in task.presets:
        raise UserError(f"task {task.name} has no training preset {preset!r}; "
                        f"presets: {', '.join(sorted(task.presets)) or 'none'}")
    base = {**task.ppo, **(task.presets.get(preset, {}) if preset else {})}
    try:
        return PPOConfig.from_dict({**base, **overrides})
    except (TypeError, ValueError) as e:
        raise UserError(f"bad training setting: {e}") from None


def _positive_int(cfg: Mapping[str, Any], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key} must be a positive integer, got {value!r}")
    return value


@dataclasses.dataclass
class SearchState:
    """Everything the loop knows; rebuilt from the run directory alone when a run is resumed."""

    cfg: dict
    task: Task
    ppo: PPOConfig
    seeds: list[int]
    worker: WorkerSettings
    history: list[Candidate] = dataclasses.field(default_factory=list)
    generations: list[GenerationRecord] = dataclasses.field(default_factory=list)
    baselines: dict[str, Candidate] = dataclasses.field(default_factory=dict)
    reflection: str = ""
    next_gen: int = 0
    wall_before_s: float = 0.0  # wall time of earlier sessions of this run
    sessions: int = 1

    def selection_mode(self, feedback: list) -> str:
        """The latest feedback's choice, else the configured one (default: fitness)."""
        return feedback[-1].selection if feedback else str(self.cfg.get("selection") or "fitness")

    def ranking(self, feedback: list) -> list[Candidate]:
        from rewardsmith.feedback.records import elo_ratings, rank_candidates

        return rank_candidates(self.history, elo_ratings(feedback), self.selection_mode(feedback))


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """How candidate code is run: the training worker's timeout and each candidate's check limits."""

    timeout_s: float
    limits: CheckLimits
    compile_cache_dir: str | None  # JAX's persistent compilation cache; None = off


def _positive_number(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _worker_settings(cfg: Mapping[str, Any]) -> WorkerSettings:
    try:
        limits = CheckLimits(cpu_s=_positive_number(cfg, "check_cpu_s", CheckLimits.cpu_s),
                             memory_mb=cfg.get("check_memory_mb", CheckLimits.memory_mb))
    except ValueError as e:
        raise UserError(str(e)) from None
    cache = cfg.get("compile_cache", True)
    if cache not in (True, False, None):
        raise UserError(f"compile_cache must be true or false, got {cache!r}")
    cache_dir = str(cfg.get("compile_cache_dir") or user_cache_dir("jax")) if cache else None
    return WorkerSettings(timeout_s=_positive_number(cfg, "worker_timeout_s", 1800), limits=limits,
                          compile_cache_dir=cache_dir)


def _check_cfg(cfg: Mapping[str, Any]) -> tuple[Task, PPOConfig, list[int], WorkerSettings]:
    task = resolve_task(cfg)
    _positive_int(cfg, "iterations", 3)
    _positive_int(cfg, "samples", 6)
    n_seeds = _positive_int(cfg, "seeds", 2)
    worker = _worker_settings(cfg)
    retries = cfg.get("max_generation_retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(f"max_generation_retries must be a non-negative integer, got {retries!r}")
    ppo = ppo_config(task, cfg)
    if _feedback_mode(cfg) not in ("", "terminal", "web", "file"):
        raise UserError(f"feedback must be none, terminal, web or file, got {cfg.get('feedback')!r}")
    if _feedback_mode(cfg) == "terminal" and not sys.stdin.isatty():
        raise UserError("feedback=terminal needs an interactive terminal (stdin is not a TTY); use "
                        "feedback=web, or feedback=file feedback_file=FEEDBACK.yaml")
    selection = cfg.get("selection") or "fitness"
    if selection not in SELECTION_MODES:
        raise UserError(f"selection must be fitness, preference or both, got {selection!r}")
    base_seed = cfg.get("seed", 0)
    if isinstance(base_seed, bool) or not isinstance(base_seed, int):
        raise UserError(f"seed must be an integer, got {base_seed!r}")
    return task, ppo, [base_seed * 1000 + s for s in range(n_seeds)], worker


def run(cfg: Any, run_dir: str | Path, display: Any = None) -> dict:
    """Run a whole search; returns the summary (also written to run_dir/summary.json)."""
    cfg = _plain(cfg)
    task, ppo, seeds, worker = _check_cfg(cfg)
    if (Path(run_dir) / "summary.json").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with rewardsmith-resume run_dir={run_dir}")
    proposer = make_proposer(cfg.get("llm") or {"provider": "offline"}, run_dir=Path(run_dir))
    rd = RunDir(run_dir)
    atomic_write_json(rd.root / "config.json", cfg)
    state = SearchState(cfg=cfg, task=task, ppo=ppo, seeds=seeds, worker=worker)
    if cfg.get("baselines", True):
        state.baselines = {kind: _baseline(kind, task) for kind in BASELINE_IDS}
    return _search(state, rd, proposer, display or _NullDisplay(), int(cfg.get("iterations", 3)))


def _baseline(kind: str, task: Task) -> Candidate:
    """The task's human or sparse baseline as an untrained candidate."""
    source = task.human_reward if kind == "human" else task.sparse_reward
    return Candidate(id=BASELINE_IDS[kind], generation=0, source=source, origin=f"baseline:{kind}",
                     note=f"{kind} baseline")


def resume(run_dir: str | Path, iterations: int | None = None, overrides: Mapping[str, Any] | None = None,
           display: Any = None) -> dict:
    """Continue a run from its run directory alone: an interrupted run finishes its configured
    generations; a finished one gets ``iterations`` more (default 1). Human feedback in
    ``feedback.json`` reaches the next generation's proposer, and its selection mode ranks candidates."""
    rd_path = Path(run_dir)
    if not (rd_path / "config.json").is_file() or not (rd_path / "summary.json").is_file():
        raise UserError(f"{run_dir} is not a rewardsmith run directory (no config.json/summary.json)")
    cfg = read_json(rd_path / "config.json")
    for k, v in (overrides or {}).items():
        cfg[k] = v
    task, ppo, seeds, worker = _check_cfg(cfg)
    summary = read_json(rd_path / "summary.json")
    rd = RunDir(rd_path)
    state = SearchState(cfg=cfg, task=task, ppo=ppo, seeds=seeds, worker=worker,
                        wall_before_s=float(summary.get("wall_time_s") or 0.0),
                        sessions=int(summary.get("sessions") or 1) + 1)
    _load_state(state, rd)
    if iterations is None:
        left = int(cfg.get("iterations", 3)) - state.next_gen
        iterations = left if summary.get("status") == "running" and left > 0 else 1
    if iterations < 1:
        raise UserError(f"iterations must be a positive integer, got {iterations!r}")
    cfg["iterations"] = state.next_gen + iterations
    atomic_write_json(rd.root / "config.json", cfg)
    proposer = make_proposer(cfg.get("llm") or {"provider": "offline"}, run_dir=rd.root)
    if hasattr(proposer, "restore"):
        proposer.restore()
    return _search(state, rd, proposer, display or _NullDisplay(), iterations)


def _load_state(state: SearchState, rd: RunDir) -> None:
    """Rebuild history, generation records, baselines and the last reflection from the run directory.
    A generation that was interrupted (candidates but no generation record) is moved to
    ``interrupted/``, not deleted."""
    records: list[GenerationRecord] = []
    for path in sorted(rd.root.glob("generations/gen_*/generation*.json")):
        records.append(GenerationRecord(**read_json(path)))
    records.sort(key=lambda r: (r.index, r.attempt))
    done = sorted({r.index for r in records})
    # generations must be contiguous from 0; anything after a gap or without a record is incomplete
    complete = 0
    while complete in done:
        complete += 1
    for d in sorted(rd.root.glob("generations/gen_*")):
        try:
            idx = int(d.name.split("_")[1])
        except (IndexError, ValueError):
            continue
        if idx >= complete:
            move_aside(d, rd.root / "interrupted" / d.name)
    state.generations = [r for r in records if r.index < complete]
    ids = [cid for r in state.generations for cid in r.candidate_ids]
    by_id: dict[str, Candidate] = {}
    for path in rd.root.glob("generations/gen_*/candidates/*/candidate.json"):
        c = Candidate.from_json(read_json(path))
        by_id[c.id] = c
    seen: set[str] = set()
    state.history = []
    for cid in ids:
        if cid in by_id and cid not in seen:
            seen.add(cid)
            state.history.append(by_id[cid])
    for kind, bid in BASELINE_IDS.items():
        path = rd.root / "baselines" / bid / "candidate.json"
        if path.is_file():
            state.baselines[kind] = Candidate.from_json(read_json(path))
        elif state.cfg.get("baselines", True):
            state.baselines[kind] = _baseline(kind, state.task)
    state.reflection = state.generations[-1].reflection if state.generations else ""
    state.next_gen = complete


def _human_context(state: SearchState, feedback: list) -> tuple[str, list[dict]]:
    """The latest human feedback in words, and term constraints from every feedback's text."""
    if not feedback:
        return "", []
    from rewardsmith.feedback.constraints import text_constraints
    from rewardsmith.feedback.records import feedback_text

    fitness = {c.id: c.fitness for c in state.history}
    text = feedback_text(feedback[-1], fitness)
    constraints: dict[str, dict] = {}
    for rec in feedback:  # later feedback on the same field wins
        words = "\n".join(list(rec.comments.values()) + [rec.overall])
        for c in text_constraints(words, state.task.schema)[0]:
            constraints[c.field] = c.to_json()
    return text, list(constraints.values())


def _feedback_mode(cfg: Mapping[str, Any]) -> str:
    mode = cfg.get("feedback")
    return "" if mode in (None, False, "", "none") else str(mode)


def _ask_feedback(rd: RunDir, cfg: Mapping[str, Any], display) -> None:
    """``feedback=terminal|web|file``: ask a person about the generation just finished, with the live
    view paused. A session that cannot start (nothing trained, no terminal) is reported, never fatal."""
    from rewardsmith.feedback.records import FeedbackError
    from rewardsmith.feedback.session import collect, open_session

    mode = _feedback_mode(cfg)
    display.pause()
    try:
        session = open_session(rd.root, top=int(cfg.get("feedback_top", 4)))
        args = {"host": "127.0.0.1", "port": int(cfg.get("feedback_port", 8765))}
        if cfg.get("feedback_file"):
            args["file"] = str(cfg["feedback_file"])
        if cfg.get("feedback_timeout_s"):
            args["timeout_s"] = cfg["feedback_timeout_s"]
        collect(session, mode, args, out=display.message)
    except (FeedbackError, UserError) as e:
        display.message(f"no human feedback for this generation: {e}")
    finally:
        display.resume()


def _search(state: SearchState, rd: RunDir, proposer, display, iterations: int) -> dict:
    """The generations and the final evaluation, all trained by one warm worker process."""
    with WarmWorker(rd.root / "worker") as process:
        return _generations(state, rd, proposer, display, iterations, process)


def _generations(state: SearchState, rd: RunDir, proposer, display, iterations: int, process: WarmWorker) -> dict:
    cfg, task, ppo, seeds = state.cfg, state.task, state.ppo, state.seeds
    samples = int(cfg.get("samples", 6))
    base_seed = int(cfg.get("seed", 0))
    max_retries = int(cfg.get("max_generation_retries", 2))
    worker = state.worker
    stop_at_target = bool(cfg.get("stop_at_target", False))
    t_start = time.time()

    def summary(status: str, final=None) -> dict:
        feedback = load_feedback(rd.root)
        ranked = state.ranking(feedback)
        return _summary(state, proposer, ranked[0] if ranked else None, t_start, status, final, feedback)

    atomic_write_json(rd.root / "summary.json", summary("running"))
    display.start(task=task.name, proposer=proposer.label, run_dir=str(rd.root))
    pending_baselines = [b for b in state.baselines.values() if b.status not in ("trained", "failed")]

    last_gen = state.next_gen + iterations - 1
    for gen in range(state.next_gen, last_gen + 1):
        feedback = load_feedback(rd.root)
        human_text, constraints = _human_context(state, feedback)
        for attempt in range(max_retries + 1):
            t_gen = time.time()
            display.generation(gen, attempt)
            ranking = [c.id for c in state.ranking(feedback)]
            ctx = ProposalContext(task=task, generation=gen, k=samples, history=list(state.history),
                                  reflection=state.reflection, seed=base_seed, human_feedback=human_text,
                                  ranking=ranking if feedback else None, constraints=constraints)
            atomic_write_json(rd.gen_dir(gen) / f"proposer_input{'' if attempt == 0 else f'_retry{attempt}'}.json",
                              {"proposer": proposer.label, "reflection": ctx.reflection,
                               "human_feedback": ctx.human_feedback, "constraints": ctx.constraints,
                               "selection": state.selection_mode(feedback), "ranking": ranking[:10]})
            try:
                proposals = proposer.propose(ctx)
            except Exception as e:  # noqa: BLE001 - a proposer failure ends proposing, not the run
                display.message(f"proposer failed: {type(e).__name__}: {e}")
                proposals = []
                if getattr(e, "fatal", False):
                    raise
            if not proposals and getattr(proposer, "exhausted", ""):
                display.message(f"LLM budget reached ({proposer.exhausted}): no more proposals")
                break
            known = {c.id for c in state.history}
            cands: list[Candidate] = []
            for p in proposals:
                cid = candidate_id(gen, p.source)
                if cid in known or any(c.id == cid for c in cands):
                    continue  # identical code was already trained
                cands.append(Candidate(id=cid, generation=gen, source=p.source, origin=proposer.origin,
                                       parents=p.parents, note=p.note, meta=p.meta))
            for c in cands:
                violations = check_source(c.source, task.schema.names)
                if violations:
                    c.validation = Validation(ok=False, stage="static", reason=str(violations[0]),
                                              details=[str(v) for v in violations[:10]])
                    c.status = "rejected"
                rd.write_candidate(c)
            display.candidates(cands + pending_baselines)
            to_train = [c for c in cands if c.status == "proposed"] + pending_baselines
            worker_error = ""
            if to_train:
                worker_error = _train(rd, gen, attempt, task, ppo, seeds, to_train, worker, display, process)
            for c in cands + pending_baselines:
                rd.write_candidate(c)
            state.history.extend(cands)
            trained = [c for c in cands if c.fitness is not None]
            if pending_baselines and all(b.status in ("trained", "failed") for b in pending_baselines) \
                    and not worker_error:
                pending_baselines = []
            ranked = state.ranking(feedback)
            best = ranked[0] if ranked else None
            gen_best = max(trained, key=lambda c: c.fitness) if trained else None
            state.reflection = generation_reflection(cands, best, termination=task.termination,
                                                     max_chars=int(cfg.get("reflection_max_chars", 8000)))
            rec = GenerationRecord(index=gen, attempt=attempt, candidate_ids=[c.id for c in cands],
                                   best_id=gen_best.id if gen_best else None,
                                   best_fitness=gen_best.fitness if gen_best else None,
                                   wall_s=time.time() - t_gen, worker_error=worker_error,
                                   reflection=state.reflection, human_feedback=human_text)
            state.generations.append(rec)
            atomic_write_json(rd.gen_dir(gen) / f"generation{'' if attempt == 0 else f'_retry{attempt}'}.json",
                              dataclasses.asdict(rec))
            s = summary("running")
            atomic_write_json(rd.root / "summary.json", s)
            if best is not None:
                write_best_reward(rd.root / "best_reward.py", best, task, s)
            write_report_safely(rd.root, display)
            display.generation_done(gen, gen_best, best)
            if trained:
                break
            display.message(f"generation {gen}: every candidate failed"
                            + (" - retrying" if attempt < max_retries else " - giving up on this generation"))
        state.next_gen = gen + 1
        if getattr(proposer, "exhausted", ""):
            break
        if _feedback_mode(cfg) and gen < last_gen:
            _ask_feedback(rd, cfg, display)
        ranked = state.ranking(load_feedback(rd.root))
        if stop_at_target and ranked and task.fitness_target is not None \
                and max(c.fitness for c in ranked) >= task.fitness_target:  # type: ignore[type-var]
            display.message(f"fitness target {task.fitness_target} reached: stopping early")
            break

    ranked = state.ranking(load_feedback(rd.root))
    best = ranked[0] if ranked else None
    final = None
    if cfg.get("final_eval", True) and best is not None:
        final = final_evaluation(rd, task, ppo, cfg, best, state.baselines, base_seed, worker, display, process)
    s = summary("complete" if best is not None else "no_candidate_trained", final)
    atomic_write_json(rd.root / "summary.json", s)
    if best is not None:
        write_best_reward(rd.root / "best_reward.py", best, task, s)
    write_report_safely(rd.root, display)
    display.finish(s)
    return s


def write_report_safely(root: Path, display) -> None:
    try:
        from rewardsmith.report import write_report

        write_report(root)
    except Exception as e:  # noqa: BLE001 - a report problem never loses the run
        display.message(f"report.html could not be written: {type(e).__name__}: {e}")


HNS_FORMULA = "HNS = (F_candidate - F_sparse) / |F_human - F_sparse|"


def hns(f_cand, f_human, f_sparse):
    if f_cand is None or f_human is None or f_sparse is None or abs(f_human - f_sparse) <= 1e-12:
        return None
    return (f_cand - f_sparse) / abs(f_human - f_sparse)


def final_evaluation(rd: RunDir, task: Task, ppo: PPOConfig, cfg: Mapping[str, Any], best: Candidate,
                     baselines: dict[str, Candidate], base_seed: int, worker: WorkerSettings, display,
                     process: WarmWorker | None = None) -> dict:
    """Retrain the best candidate and both baselines with ``eval_seeds`` fresh seeds at the final budget."""
    n = _positive_int(cfg, "eval_seeds", 5)
    final_steps = cfg.get("final_total_timesteps")
    if final_steps:
        ppo = dataclasses.replace(ppo, total_timesteps=int(final_steps))
    seeds = [base_seed * 1000 + 500 + i for i in range(n)]
    if (rd.root / "final").exists():  # an earlier session's final evaluation: kept beside the new one
        move_aside(rd.root / "final", rd.root / "final.before-resume")
    entries = {"best": best.source, "human": task.human_reward, "sparse": task.sparse_reward}
    cands = [Candidate(id=f"final-{k}", generation=-1, source=src, origin=k) for k, src in entries.items()]
    display.message(f"final evaluation: best {best.id} and both baselines, {n} seeds each, "
                    f"{ppo.env_steps} env steps")
    err = _train(rd, 0, 0, task, ppo, seeds, cands, worker, display, process, workdir=rd.root / "final" / "worker",
                 rollout_dir=rd.root / "final" / "rollouts" if cfg.get("record_rollouts", True) else None)
    out: dict[str, Any] = {"eval_seeds": seeds, "env_steps_per_member": ppo.env_steps, "worker_error": err or None,
                           "hns_formula": HNS_FORMULA}
    for key, c in zip(entries, cands):
        fits = [m.fitness for m in c.members if m.ok and m.fitness is not None]
        out[key] = {"id": best.id if key == "best" else BASELINE_IDS[key],
                    "fitness_mean": float(np.mean(fits)) if fits else None,
                    "fitness_std": float(np.std(fits)) if fits else None,
                    "per_seed": [m.fitness for m in c.members],
                    "failed_seeds": sum(1 for m in c.members if not m.ok)}
        atomic_write_json(rd.root / "final" / f"{key}.json", c.to_json())
    out["hns"] = hns(out["best"]["fitness_mean"], out["human"]["fitness_mean"], out["sparse"]["fitness_mean"])
    atomic_write_json(rd.root / "final" / "final.json", out)
    return out


def _train(rd: RunDir, gen: int, attempt: int, task: Task, ppo: PPOConfig, seeds: list[int],
           cands: list[Candidate], worker: WorkerSettings, display, process: WarmWorker | None = None,
           workdir: Path | None = None,
           rollout_dir: Path | None = None) -> str:
    """Train ``cands`` in one worker; rollouts go beside each candidate's record, or, with
    ``rollout_dir``, into that folder with an offline viewer and a GIF each."""
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
            display.message(f"training {ev.get('members')} members in one program on {ev.get('devices')} device(s)")
        elif kind == "progress":
            display.progress(int(ev.get("updates", 0)), int(ev.get("of", 0)), dict(ev.get("fitness") or {}))
        elif kind == "trained":
            display.message(f"compiled in {ev.get('compile_s', 0):.1f} s (rewards {ev.get('reward_compile_s', 0):.1f} s), "
                            f"trained in {ev.get('train_s', 0):.1f} s")
        display.candidates(cands)

    workdir = workdir or rd.gen_dir(gen) / "worker" / f"attempt_{attempt}"
    try:
        runner = process.run if process is not None else run_worker
        result = runner(job, workdir, timeout_s=worker.timeout_s, on_event=on_event)
    except WorkerError as e:
        for c in cands:
            c.status = "failed"
            c.validation = c.validation or Validation(ok=False, stage="trace", reason="not checked: worker failed")
            c.members = []
            c.note = (c.note + " | " if c.note else "") + f"worker failure: {e}"
        display.message(str(e))
        display.candidates(cands)
        return str(e)
    from rewardsmith.records import MemberResult

    for cid, res in result["candidates"].items():
        c = by_id[cid]
        if res.get("rollout"):
            if rollout_dir is not None:
                _save_rollout(rollout_dir, cid, res["rollout"], task, display)
            else:
                atomic_write_json(rd.record_dir(c) / "rollout.json", res["rollout"])
        c.validation = Validation(**res["validation"])
        c.members = [MemberResult(**m) for m in res["members"]]
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


def _summary(state: SearchState, proposer, best: Candidate | None, t_start: float, status: str,
             final=None, feedback: list | None = None) -> dict:
    from rewardsmith.feedback.records import elo_ratings

    task, cfg, history = state.task, state.cfg, state.history
    human = state.baselines.get("human")
    sparse = state.baselines.get("sparse")
    f_h = human.fitness if human else None
    f_s = sparse.fitness if sparse else None
    search_hns = hns(best.fitness if best else None, f_h, f_s)
    per_gen: dict[int, dict] = {}
    for g in state.generations:
        if g.best_fitness is not None or g.index not in per_gen:
            per_gen[g.index] = {"generation": g.index, "attempts": g.attempt + 1, "best_id": g.best_id,
                                "best_fitness": g.best_fitness}
    counts: dict[str, int] = {}
    for c in history:
        counts[c.status] = counts.get(c.status, 0) + 1
    feedback = feedback or []
    return {
        "status": status,
        "task": task.name,
        "proposer": proposer.label,
        "proposer_kind": proposer.origin.split(":")[0],
        "model": getattr(proposer, "model", None),
        "best_candidate_id": best.id if best else None,
        "best_fitness": best.fitness if best else None,
        "best_fitness_std": best.fitness_std if best else None,
        "selection": state.selection_mode(feedback),
        "human_baseline_fitness": f_h,
        "sparse_baseline_fitness": f_s,
        "human_normalised_score": final["hns"] if final else search_hns,
        "hns_formula": HNS_FORMULA,
        "search_hns": search_hns,
        "final_evaluation": final,
        "fitness_doc": task.fitness_doc,
        "per_generation_best": [per_gen[k] for k in sorted(per_gen)],
        "candidates": counts,
        "seeds": state.seeds,
        "env_steps_per_member": state.ppo.env_steps,
        "iterations": cfg.get("iterations"),
        "samples": cfg.get("samples"),
        "human_feedback": {"generations": [r.generation for r in feedback],
                           "preference_ratings": {k: round(v, 1) for k, v in elo_ratings(feedback).items()}}
        if feedback else None,
        "sessions": state.sessions,
        "wall_time_s": round(state.wall_before_s + time.time() - t_start, 2),
        "llm": proposer.usage() if hasattr(proposer, "usage") else None,
        "stopped_by_budget": getattr(proposer, "exhausted", "") or None,
    }


class _NullDisplay:
    def __getattr__(self, name):
        return lambda *a, **k: None
