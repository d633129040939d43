from __future__ import annotations

import keyword
from pathlib import Path

from rewardsmith.records import Candidate, Summary
from rewardsmith.rundir import atomic_write_text
from rewardsmith.tasks.base import Task
from rewardsmith.tasks.schema import StateSchema


def render_standalone(cand: Candidate, task: Task, summary: Summary) -> str:
    """best_reward.py: the candidate's code with provenance comments; imports only jax.numpy."""
    comps = cand.validation.components if cand.validation else []
    lines = [
        "# Reward exported by rewardsmith.",
        f"# task: {task.name}    candidate: {cand.id}    generation: {cand.generation}",
        f"# fitness: {cand.fitness} ± {cand.fitness_std} ({task.fitness_doc})",
        f"# written by: {summary.proposer}",
        f"# human baseline fitness: {summary.human_baseline_fitness}    "
        f"sparse baseline fitness: {summary.sparse_baseline_fitness}",
        "# Contract: compute_reward(state, action, next_state) -> (total, {component: value}) on one",
        "# unbatched transition; vmap it for batches. State fields:",
        *[f"#   {f.describe()}" for f in task.schema.fields],
        f"#   {task.schema.action.describe()}",
        "",
    ]
    return "\n".join(lines) + cand.source.rstrip() + f"\n\n\nCOMPONENTS = {tuple(comps)!r}\n"


def write_best_reward(path: str | Path, cand: Candidate, task: Task, summary: Summary) -> None:
    atomic_write_text(path, render_standalone(cand, task, summary))


def schema_dataclass(schema: StateSchema, array_module: str) -> str:
    lines = ["@dataclasses.dataclass", "class State:",
             '    """The state a reward reads (one transition, unbatched). Units and meanings:', ""]
    for f in schema.fields:
        lines.append(f"    {f.describe()}")
    lines.append(f"    {schema.action.describe()}")
    lines.append('    """')
    lines.append("")
    for f in schema.fields:
        name = f.name + ("_" if keyword.iskeyword(f.name) else "")
        ann = "float" if not f.shape else f"{array_module}.ndarray  # shape {list(f.shape)}"
        lines.append(f"    {name}: {ann}")
    return "\n".join(lines)


def render_export(cand: Candidate, task: Task, provenance: dict, fmt: str = "jax") -> str:
    """A standalone module: provenance docstring, the schema as a dataclass, the reward, COMPONENTS."""
    from rewardsmith.export.numpy_transform import to_numpy

    if fmt not in ("jax", "numpy"):
        raise ValueError(f"format must be jax or numpy, got {fmt!r}")
    comps = cand.validation.components if cand.validation else []
    doc = [
        f'"""Reward for task {task.name!r}, exported by rewardsmith (format: {fmt}).',
        "",
        f"run:        {provenance.get('run_dir')}",
        f"candidate:  {cand.id} (generation {cand.generation}, origin {cand.origin})",
        f"fitness:    {cand.fitness} ± {cand.fitness_std} — {task.fitness_doc}",
        f"written by: {provenance.get('proposer')}" + (f" ({provenance['model']})" if provenance.get("model") else ""),
        "",
        "Use: total, components = compute_reward(state, action, next_state) on one transition,",
        "with state/next_state carrying the fields of State below.",
        '"""',
    ]
    code = cand.source if fmt == "jax" else to_numpy(cand.source)
    array_module = "jnp" if fmt == "jax" else "np"
    header_import = "import jax.numpy as jnp" if fmt == "jax" else "import numpy as np"
    return ("\n".join(doc) + "\nimport dataclasses\n\n" + header_import + "\n\n\n"
            + schema_dataclass(task.schema, array_module) + "\n\n\nCOMPONENTS = " + repr(tuple(comps)) + "\n\n"
            + "# --- reward (" + fmt + ") " + "-" * 60 + "\n" + code.rstrip() + "\n")
