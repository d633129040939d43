"""The final evaluation: the best candidate and both baselines retrained with fresh seeds at the final
budget, and the human-normalised score."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from rewardsmith.errors import UserError
from rewardsmith.records import Candidate
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.tasks import Task
from rewardsmith.report.rollout_view import rollout_files
from rewardsmith.train.candidates import Training, WorkerSettings, train_candidates
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.train.runner import WarmWorker

BASELINE_IDS = {"human": "baseline-human", "sparse": "baseline-sparse"}


HNS_FORMULA = "HNS = (F_candidate - F_sparse) / |F_human - F_sparse|"


def hns(f_cand, f_human, f_sparse):
    if f_cand is None or f_human is None or f_sparse is None or abs(f_human - f_sparse) <= 1e-12:
        return None
    return (f_cand - f_sparse) / abs(f_human - f_sparse)


@dataclasses.dataclass(frozen=True)
class FinalSettings:
    """The final evaluation (``final_eval``): ``eval_seeds`` fresh seeds each, at ``total_timesteps``
    (None: the search's budget); rollouts recorded with ``record_rollouts``."""

    on: bool = True
    eval_seeds: int = 5
    total_timesteps: int | None = None
    record_rollouts: bool = True

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "FinalSettings":
        n = cfg.get("eval_seeds", 5)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"eval_seeds must be a positive integer, got {n!r}")
        steps = cfg.get("final_total_timesteps")
        return cls(on=bool(cfg.get("final_eval", True)), eval_seeds=n, total_timesteps=int(steps) if steps else None,
                   record_rollouts=bool(cfg.get("record_rollouts", True)))


def final_evaluation(rd: RunDir, task: Task, ppo: PPOConfig, settings: FinalSettings, best: Candidate,
                     baselines: dict[str, Candidate], base_seed: int, worker: WorkerSettings, display,
                     process: WarmWorker | None = None) -> dict:
    """Retrain the best candidate and both baselines with ``eval_seeds`` fresh seeds at the final budget."""
    n = settings.eval_seeds
    if settings.total_timesteps:
        ppo = dataclasses.replace(ppo, total_timesteps=settings.total_timesteps)
    seeds = [base_seed * 1000 + 500 + i for i in range(n)]
    rd.set_aside_final()  # an earlier session's final evaluation is kept beside the new one
    entries = {"best": best.source, "human": task.human_reward, "sparse": task.sparse_reward}
    entries = {k: src for k, src in entries.items() if src}  # an own environment may have no baselines
    cands = [Candidate(id=f"final-{k}", generation=-1, source=src, origin=k) for k, src in entries.items()]
    display.message(f"final evaluation: best {best.id}{' and both baselines' if len(entries) > 1 else ''}, {n} seeds each, "
                    f"{ppo.env_steps} env steps")
    err = train_candidates(rd, Training(task, ppo, tuple(seeds), worker, process), cands, display,
                           workdir=rd.final_worker_dir,
                           rollouts=rollout_files(rd.final_rollouts_dir, task.name, display)
                           if settings.record_rollouts else None, keep_trajectories=False)
    out: dict[str, Any] = {"eval_seeds": seeds, "env_steps_per_member": ppo.env_steps, "worker_error": err or None,
                           "hns_formula": HNS_FORMULA}
    for key, c in zip(entries, cands):
        out[key] = {"id": best.id if key == "best" else BASELINE_IDS[key],
                    "fitness_mean": c.fitness, "fitness_std": c.fitness_std,  # over its ok seeds
                    "per_seed": [m.fitness for m in c.members],
                    "failed_seeds": sum(1 for m in c.members if not m.ok)}
        atomic_write_json(rd.final_path(key), c.to_json())
    out["hns"] = hns(*(out.get(k, {}).get("fitness_mean") for k in ("best", "human", "sparse")))
    atomic_write_json(rd.final_path("final"), out)
    return out
