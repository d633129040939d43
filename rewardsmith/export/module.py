from __future__ import annotations

from pathlib import Path

from rewardsmith.records import Candidate
from rewardsmith.rundir import atomic_write_text
from rewardsmith.tasks.base import Task


def render_standalone(cand: Candidate, task: Task, summary: dict) -> str:
    comps = cand.validation.components if cand.validation else []
    lines = [
        "# Reward exported by rewardsmith.",
        f"# task: {task.name}    candidate: {cand.id}    generation: {cand.generation}",
        f"# fitness: {cand.fitness} ± {cand.fitness_std} ({task.fitness_doc})",
        f"# written by: {summary.get('proposer')}",
        f"# human baseline fitness: {summary.get('human_baseline_fitness')}    "
        f"sparse baseline fitness: {summary.get('sparse_baseline_fitness')}",
        "# Contract: compute_reward(state, action, next_state) -> (total, {component: value}) on one",
        "# unbatched transition; vmap it for batches. State fields:",
        *[f"#   {f.describe()}" for f in task.schema.fields],
        f"#   {task.schema.action.describe()}",
        "",
    ]
    return "\n".join(lines) + cand.source.rstrip() + f"\n\n\nCOMPONENTS = {tuple(comps)!r}\n"


def write_best_reward(path: str | Path, cand: Candidate, task: Task, summary: dict) -> None:
    atomic_write_text(path, render_standalone(cand, task, summary))
