"""Turning one member's raw training outputs into ~10 checkpoints and evaluation statistics."""

from __future__ import annotations

import math

import numpy as np

from rewardsmith.records import MemberResult
from rewardsmith.tasks.base import Task
from rewardsmith.train.ppo import PPOConfig

NUM_CHECKPOINTS = 10


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def member_results(out: dict, seed: int, component_names: list[str], task: Task, config: PPOConfig) -> MemberResult:
    curve = {k: np.asarray(v) for k, v in out["curve"].items()}
    n_updates = len(curve["reward"])
    chunks = np.array_split(np.arange(n_updates), min(NUM_CHECKPOINTS, n_updates))
    per_update = config.num_envs * config.num_steps
    fitness_curve, length_curve, reward_curve, steps = [], [], [], []
    comp_curves: dict[str, list[float]] = {n: [] for n in component_names}
    for ch in chunks:
        eps = curve["episodes"][ch].sum()
        fitness_curve.append(_finite(curve["fitness_sum"][ch].sum() / eps) if eps > 0 else None)
        length_curve.append(_finite(curve["length_sum"][ch].sum() / eps) if eps > 0 else None)
        reward_curve.append(_finite(curve["reward"][ch].mean()))
        for j, n in enumerate(component_names):
            comp_curves[n].append(_finite(curve["components"][ch, j].mean()))
        steps.append(int((ch[-1] + 1) * per_update))
    ev = out["eval"]
    fitness = np.asarray(ev["fitness"], np.float64)
    nonfinite = int(out["nonfinite_rewards"])
    stopped = int(out.get("stopped_at_update", -1))
    stop_note = f"; stopped after update {stopped} of {config.num_updates}" if stopped > 0 else ""
    reason = ""
    if nonfinite:
        reason = f"reward was NaN/inf on {nonfinite} training steps (masked){stop_note}"
    elif not bool(out["params_finite"]) or stopped > 0:
        reason = f"policy parameters became NaN/inf (masked){stop_note}"
    elif not np.all(np.isfinite(fitness)):
        reason = "evaluation fitness is NaN/inf (masked)"
    ok = not reason
    evaluation = {
        "fitness_mean": _finite(fitness.mean()),
        "fitness_std": _finite(fitness.std()),
        "length_mean": _finite(np.mean(ev["length"])),
        "terminated_frac": _finite(np.mean(ev["terminated"])),
        "length_terminated_mean": (_finite(np.mean(np.asarray(ev["length"])[np.asarray(ev["terminated"], bool)]))
                                   if np.any(ev["terminated"]) else None),
        "episodes": int(fitness.size),
        "reward_per_step": _finite(ev["reward"]),
        "components_per_step": {n: _finite(ev["components"][j]) for j, n in enumerate(component_names)},
        "fields": {name: {"min": _finite(ev["field_min"][j]), "mean": _finite(ev["field_mean"][j]), "max": _finite(ev["field_max"][j])}
                   for j, name in enumerate(task.schema.names)},
        "action_abs_mean": _finite(ev["action_abs_mean"]),
    }
    return MemberResult(
        seed=int(seed), ok=ok, fitness=evaluation["fitness_mean"] if ok else None, reason=reason,
        checkpoints=steps, fitness_curve=fitness_curve, length_curve=length_curve, reward_curve=reward_curve,
        component_curves=comp_curves, eval=evaluation,
        env_steps=int(out.get("env_steps", n_updates * per_update)),
        rung=int(out["rung"]) if "rung" in out else None, rungs=int(out["rungs"]) if "rungs" in out else None,
    )
