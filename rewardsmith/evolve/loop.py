"""The search loop: propose -> validate -> train (one program) -> evaluate -> reflect, N times.

``run(cfg, run_dir)`` is a plain function (the hydra entry point is a thin shell over it). The run
directory is the source of truth: every candidate, every generation and the summary are written
atomically as soon as they are known.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rewardsmith.errors import UserError
from rewardsmith.export import write_best_reward
from rewardsmith.propose import make_proposer
from rewardsmith.propose.base import ProposalContext
from rewardsmith.records import Candidate, GenerationRecord, Validation, candidate_id
from rewardsmith.reflect import generation_reflection
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.tasks import Task, UnknownTaskError, get_task
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.train.runner import WorkerError, run_worker
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


def run(cfg: Any, run_dir: str | Path, display: Any = None) -> dict:
    """Run a whole search; returns the summary (also written to run_dir/summary.json)."""
    cfg = _plain(cfg)
    task = resolve_task(cfg)
    iterations = _positive_int(cfg, "iterations", 3)
    samples = _positive_int(cfg, "samples", 6)
    n_seeds = _positive_int(cfg, "seeds", 2)
    ppo = ppo_config(task, cfg)
    proposer = make_proposer(cfg.get("llm") or {"provider": "offline"}, run_dir=Path(run_dir))
    base_seed = int(cfg.get("seed", 0))
    seeds = [base_seed * 1000 + s for s in range(n_seeds)]
    max_retries = int(cfg.get("max_generation_retries", 2))
    timeout_s = float(cfg.get("worker_timeout_s", 1800))
    stop_at_target = bool(cfg.get("stop_at_target", False))

    rd = RunDir(run_dir)
    display = display or _NullDisplay()
    atomic_write_json(rd.root / "config.json", cfg)
    t_start = time.time()
    history: list[Candidate] = []
    generations: list[GenerationRecord] = []
    baselines: dict[str, Candidate] = {}
    best: Candidate | None = None
    reflection = ""
    summary = _summary(task, proposer, ppo, cfg, seeds, history, generations, baselines, best, t_start, "running")
    atomic_write_json(rd.root / "summary.json", summary)
    display.start(task=task.name, proposer=proposer.label, run_dir=str(rd.root))

    pending_baselines = []
    if cfg.get("baselines", True):
        for kind, source in (("human", task.human_reward), ("sparse", task.sparse_reward)):
            c = Candidate(id=BASELINE_IDS[kind], generation=0, source=source, origin=f"baseline:{kind}",
                          note=f"{kind} baseline")
            baselines[kind] = c
            pending_baselines.append(c)

    for gen in range(iterations):
        for attempt in range(max_retries + 1):
            t_gen = time.time()
            display.generation(gen, attempt)
            ctx = ProposalContext(task=task, generation=gen, k=samples, history=list(history),
                                  reflection=reflection, seed=base_seed)
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
            known = {c.id for c in history}
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
                worker_error = _train(rd, gen, attempt, task, ppo, seeds, to_train, timeout_s, display)
            for c in cands + pending_baselines:
                _write(rd, c)
            history.extend(cands)
            trained = [c for c in cands if c.fitness is not None]
            if pending_baselines and all(b.status in ("trained", "failed") for b in pending_baselines) \
                    and not worker_error:
                pending_baselines = []
            for c in trained:
                if best is None or c.fitness > best.fitness:  # type: ignore[operator]
                    best = c
            gen_best = max(trained, key=lambda c: c.fitness) if trained else None
            reflection = generation_reflection(cands, best, termination=task.termination,
                                               max_chars=int(cfg.get("reflection_max_chars", 8000)))
            rec = GenerationRecord(index=gen, attempt=attempt, candidate_ids=[c.id for c in cands],
                                   best_id=gen_best.id if gen_best else None,
                                   best_fitness=gen_best.fitness if gen_best else None,
                                   wall_s=time.time() - t_gen, worker_error=worker_error, reflection=reflection)
            generations.append(rec)
            atomic_write_json(rd.gen_dir(gen) / f"generation{'' if attempt == 0 else f'_retry{attempt}'}.json",
                              dataclasses.asdict(rec))
            summary = _summary(task, proposer, ppo, cfg, seeds, history, generations, baselines, best, t_start,
                               "running")
            atomic_write_json(rd.root / "summary.json", summary)
            if best is not None:
                write_best_reward(rd.root / "best_reward.py", best, task, summary)
            write_report_safely(rd.root, display)
            display.generation_done(gen, gen_best, best)
            if trained:
                break
            display.message(f"generation {gen}: every candidate failed"
                            + (" - retrying" if attempt < max_retries else " - giving up on this generation"))
        if getattr(proposer, "exhausted", ""):
            break
        if stop_at_target and best is not None and task.fitness_target is not None \
                and best.fitness >= task.fitness_target:  # type: ignore[operator]
            display.message(f"fitness target {task.fitness_target} reached: stopping early")
            break

    final = None
    if cfg.get("final_eval", True) and best is not None:
        final = final_evaluation(rd, task, ppo, cfg, best, baselines, base_seed, timeout_s, display)
    summary = _summary(task, proposer, ppo, cfg, seeds, history, generations, baselines, best, t_start,
                       "complete" if best is not None else "no_candidate_trained", final)
    atomic_write_json(rd.root / "summary.json", summary)
    write_report_safely(rd.root, display)
    display.finish(summary)
    return summary


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
                     baselines: dict[str, Candidate], base_seed: int, timeout_s: float, display) -> dict:
    """Retrain the best candidate and both baselines with ``eval_seeds`` fresh seeds at the final budget."""
    n = _positive_int(cfg, "eval_seeds", 5)
    final_steps = cfg.get("final_total_timesteps")
    if final_steps:
        ppo = dataclasses.replace(ppo, total_timesteps=int(final_steps))
    seeds = [base_seed * 1000 + 500 + i for i in range(n)]
    entries = {"best": best.source, "human": task.human_reward, "sparse": task.sparse_reward}
    cands = [Candidate(id=f"final-{k}", generation=-1, source=src, origin=k) for k, src in entries.items()]
    display.message(f"final evaluation: best {best.id} and both baselines, {n} seeds each, "
                    f"{ppo.env_steps} env steps")
    err = _train(rd, 0, 0, task, ppo, seeds, cands, timeout_s, display, workdir=rd.root / "final" / "worker",
                 record_rollouts=bool(cfg.get("record_rollouts", True)))
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
           cands: list[Candidate], timeout_s: float, display, workdir: Path | None = None,
           record_rollouts: bool = False) -> str:
    by_id = {c.id: c for c in cands}
    for c in cands:
        c.status = "checking"
    job = {
        "task": {"name": task.name, "file": task.source_file if task.source_file else None,
                 "env": dict(task.env_config)},
        "ppo": dataclasses.asdict(ppo),
        "seeds": seeds,
        "candidates": [{"id": c.id, "source": c.source} for c in cands],
        "check_seed": gen,
        "record_rollouts": record_rollouts,
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
        elif kind == "trained":
            display.message(f"compiled in {ev.get('compile_s', 0):.1f} s, trained in {ev.get('train_s', 0):.1f} s")
        display.candidates(cands)

    workdir = workdir or rd.gen_dir(gen) / "worker" / f"attempt_{attempt}"
    try:
        result = run_worker(job, workdir, timeout_s=timeout_s, on_event=on_event)
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

    if result.get("rollouts"):
        _save_rollouts(workdir.parent / "rollouts", result["rollouts"], task, display)
    for cid, res in result["candidates"].items():
        c = by_id[cid]
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


def _save_rollouts(directory: Path, rollouts: dict, task: Task, display) -> None:
    """rollouts/<id>.json, an offline viewer (.html) and an animated GIF per recorded policy."""
    from rewardsmith.report.rollout_view import write_gif, write_viewer

    for cid, r in rollouts.items():
        atomic_write_json(directory / f"{cid}.json", r)
        write_viewer(r, directory / f"{cid}.html", f"{task.name} · {cid}")
        try:
            write_gif(r, directory / f"{cid}.gif")
        except Exception as e:  # noqa: BLE001 - the viewer is written; the GIF is a convenience
            display.message(f"rollout GIF for {cid} not written: {type(e).__name__}: {e}")


def _write(rd: RunDir, c: Candidate) -> None:
    if c.origin.startswith("baseline:"):
        d = rd.root / "baselines" / c.id
        from rewardsmith.rundir import atomic_write_text

        atomic_write_text(d / "reward.py", c.source)
        atomic_write_json(d / "candidate.json", c.to_json())
    else:
        rd.write_candidate(c)


def _summary(task, proposer, ppo, cfg, seeds, history, generations, baselines, best, t_start, status,
             final=None) -> dict:
    human = baselines.get("human")
    sparse = baselines.get("sparse")
    f_h = human.fitness if human else None
    f_s = sparse.fitness if sparse else None
    search_hns = hns(best.fitness if best else None, f_h, f_s)
    per_gen: dict[int, dict] = {}
    for g in generations:
        if g.best_fitness is not None or g.index not in per_gen:
            per_gen[g.index] = {"generation": g.index, "attempts": g.attempt + 1, "best_id": g.best_id,
                                "best_fitness": g.best_fitness}
    counts: dict[str, int] = {}
    for c in history:
        counts[c.status] = counts.get(c.status, 0) + 1
    return {
        "status": status,
        "task": task.name,
        "proposer": proposer.label,
        "proposer_kind": proposer.origin.split(":")[0],
        "model": getattr(proposer, "model", None),
        "best_candidate_id": best.id if best else None,
        "best_fitness": best.fitness if best else None,
        "best_fitness_std": best.fitness_std if best else None,
        "human_baseline_fitness": f_h,
        "sparse_baseline_fitness": f_s,
        "human_normalised_score": final["hns"] if final else search_hns,
        "hns_formula": HNS_FORMULA,
        "search_hns": search_hns,
        "final_evaluation": final,
        "fitness_doc": task.fitness_doc,
        "per_generation_best": [per_gen[k] for k in sorted(per_gen)],
        "candidates": counts,
        "seeds": seeds,
        "env_steps_per_member": ppo.env_steps,
        "iterations": cfg.get("iterations"),
        "samples": cfg.get("samples"),
        "wall_time_s": round(time.time() - t_start, 2),
        "llm": proposer.usage() if hasattr(proposer, "usage") else None,
        "stopped_by_budget": getattr(proposer, "exhausted", "") or None,
    }


class _NullDisplay:
    def __getattr__(self, name):
        return lambda *a, **k: None
