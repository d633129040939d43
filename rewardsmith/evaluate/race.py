"""The finals: before the final evaluation, the search's top few candidates train again on more seeds,
and the one with the best fitness over all its seeds goes on.

The search ranks on a few training seeds (``seeds``, default 2). Where several candidates sit at a
task's ceiling, or within seed noise of each other, that ranking is a coin toss, and the coin decides
what the final evaluation and the export see. The finals spend one more training job (the finalists
x ``finalist_seeds`` members, padded to the run's usual population so that the compiled trainer is
shared) to make the choice on more evidence. Their seeds are the run's own, apart from both the
training seeds and the final evaluation's: the final evaluation stays an unbiased estimate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from rewardsmith.errors import UserError
from rewardsmith.evaluate.ranking import learning_area
from rewardsmith.records import Candidate, fmt
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.tasks import Task
from rewardsmith.report.rollout_view import rollout_files
from rewardsmith.train.candidates import Training, WorkerSettings, train_candidates
from rewardsmith.train.ppo import PPOConfig

RACE_SEED_OFFSET = 200  # training seeds are base*1000 + i, the final evaluation's base*1000 + 500 + i


@dataclasses.dataclass(frozen=True)
class RaceSettings:
    """``finalists`` (0 or 1: no finals) train again on ``finalist_seeds`` more seeds each."""

    finalists: int = 3
    finalist_seeds: int = 5
    record_rollouts: bool = True

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "RaceSettings":
        finalists = cfg.get("finalists", 3)
        seeds = cfg.get("finalist_seeds", 5)
        if isinstance(finalists, bool) or not isinstance(finalists, int) or finalists < 0:
            raise UserError(f"finalists must be a non-negative integer (0 or 1: no finals), got {finalists!r}")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds < RACE_SEED_OFFSET:
            raise UserError(f"finalist_seeds must be an integer from 1 to {RACE_SEED_OFFSET - 1}, got {seeds!r}")
        return cls(finalists=finalists, finalist_seeds=seeds, record_rollouts=bool(cfg.get("record_rollouts", True)))


def race_settings(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """(finalists, finalist_seeds) of ``cfg``, checked."""
    s = RaceSettings.from_cfg(cfg)
    return s.finalists, s.finalist_seeds


def race_seeds(base_seed: int, n: int) -> list[int]:
    return [base_seed * 1000 + RACE_SEED_OFFSET + i for i in range(n)]


def pooled(c: Candidate) -> tuple[float | None, int, int]:
    """(mean fitness over every seed the candidate trained on: the search's and the finals', the
    number of those seeds, how many failed)."""
    per_seed = [m.fitness if m.ok else None for m in c.members] + list((c.race or {}).get("per_seed", []))
    fits = [f for f in per_seed if f is not None and math.isfinite(f)]
    return (sum(fits) / len(fits) if fits else None), len(per_seed), len(per_seed) - len(fits)


def race_order(finalists: list[Candidate]) -> list[Candidate]:
    """Fewest failed seeds first, then the best pooled fitness, then the sooner learner."""
    def key(c: Candidate):
        mean, _, failed = pooled(c)
        return failed, -(mean if mean is not None else -math.inf), -learning_area(c)

    return sorted(finalists, key=key)


def is_current(race: Mapping[str, Any] | None, history: list[Candidate]) -> bool:
    """The finals still decide the ranking: no candidate was proposed after them."""
    if not race:
        return False
    return all(c.generation <= int(race.get("after_generation", -1)) for c in history)


def apply_race(ranked: list[Candidate], race: Mapping[str, Any] | None, history: list[Candidate]) -> list[Candidate]:
    """The finalists first in the finals' order, then the rest as the search ranked them."""
    if not is_current(race, history):
        return ranked
    ids = [f["id"] for f in race["finalists"]]  # type: ignore[index]
    by_id = {c.id: c for c in ranked}
    front = [by_id[i] for i in ids if i in by_id]
    return front + [c for c in ranked if c.id not in ids]


def run_finals(rd: RunDir, task: Task, ppo: PPOConfig, settings: RaceSettings, ranked: list[Candidate],
               base_seed: int, after_generation: int, worker: WorkerSettings, display, process=None) -> dict | None:
    """Train the top ``finalists`` of ``ranked`` on ``finalist_seeds`` more seeds (those already
    raced on the same seeds and budget are not trained again); write ``race.json`` and each
    finalist's ``race`` record; return the race record, or None when there were no finals."""
    n_final, n_seeds = settings.finalists, settings.finalist_seeds
    finalists = ranked[:n_final]
    if n_final < 2 or len(finalists) < 2:
        return None
    seeds = race_seeds(base_seed, n_seeds)
    todo = [c for c in finalists
            if not (c.race and c.race.get("seeds") == seeds and c.race.get("env_steps_per_member") == ppo.env_steps)]
    if todo:
        display.message(f"finals: {', '.join(c.id for c in todo)} train on {n_seeds} more seeds each "
                        f"({ppo.env_steps} env steps)")
        runners = [Candidate(id=c.id, generation=c.generation, source=c.source, origin=c.origin) for c in todo]
        err = train_candidates(rd, Training(task, ppo, tuple(seeds), worker, process), runners, display,
                               workdir=rd.race_worker_dir,
                               rollouts=rollout_files(rd.race_rollouts_dir, task.name, display)
                               if settings.record_rollouts else None, keep_trajectories=False)
        if err:
            display.message(f"finals: the worker failed ({err}); the search's ranking stands")
            return None
        for c, r in zip(todo, runners):
            per_seed = [m.fitness if m.ok else None for m in r.members] or [None] * len(seeds)
            c.race = {"seeds": seeds, "env_steps_per_member": ppo.env_steps, "per_seed": per_seed,
                      "fitness": r.fitness, "fitness_std": r.fitness_std,
                      "reason": "" if r.status == "trained" else (r.validation.reason if r.validation else r.status)}
            rd.write_candidate(c)
    order = race_order(finalists)
    rows = []
    for c in order:
        mean, n, failed = pooled(c)
        rows.append({"id": c.id, "search_fitness": c.fitness, "race_fitness": (c.race or {}).get("fitness"),
                     "pooled_fitness": mean, "seeds": n, "failed_seeds": failed})
    record = {"after_generation": after_generation, "seeds": seeds, "env_steps_per_member": ppo.env_steps,
              "finalists": rows, "winner": order[0].id, "search_best": finalists[0].id}
    atomic_write_json(rd.race_path, record)
    display.message("finals: " + ", ".join(f"{r['id']} {fmt(r['pooled_fitness'])} over {r['seeds']} seeds"
                                           for r in rows)
                    + f" -> {order[0].id}" + ("" if order[0].id == finalists[0].id
                                               else f" (the search's best was {finalists[0].id})"))
    return record
