"""Does ``task=own task.env=SOURCE`` work on an environment nobody here wrote?

One row per environment: the schema is inferred, the inferred action equals the environment's own
action space, the action reaches the environment, two PPO updates run with a reward over its
fields, the fitness is finite, and the task file the run would write loads again. Used by the
conformance test (every gymnax id, a few Brax envs) and ``benchmarks/conformance.py`` (all of them).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import yaml


@dataclasses.dataclass
class Row:
    env: str
    ok: bool = False
    action: str = ""
    fields: int = 0
    stage: str = ""  # the first check that failed ("" when all passed)
    reason: str = ""
    needs_data: bool = False  # the environment downloads data at creation (impossible offline)
    seconds: float = 0.0


def own_space(adapter) -> dict:
    """The environment's own action space, as an action spec mapping."""
    env = adapter.env
    if hasattr(adapter, "params") and hasattr(env, "action_space"):
        space = env.action_space(adapter.params)
        n = getattr(space, "n", None) or getattr(space, "num_categories", None)
        if n is not None:
            return {"kind": "discrete", "n": int(n)}
        return {"kind": "continuous", "shape": tuple(space.shape) or (1,), "low": float(f"{np.min(space.low):.7g}"),
                "high": float(f"{np.max(space.high):.7g}")}
    if hasattr(env, "action_size"):
        return {"kind": "continuous", "shape": (int(env.action_size),), "low": -1.0, "high": 1.0}
    return {"kind": "discrete", "n": int(env.num_actions)}


def _matches(spec, space: dict) -> bool:
    if spec.kind != space["kind"]:
        return False
    if spec.kind == "discrete":
        return spec.n == space["n"]
    return tuple(spec.shape) == tuple(space["shape"]) and spec.low == space["low"] and spec.high == space["high"]


def probe_reward(schema) -> str:
    """A reward over the first rewardable field: the two updates need some reward to learn from."""
    field = next((f for f in schema.fields if f.rewardable), schema.fields[0])
    return ("import jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n"
            f"    r = -jnp.mean(jnp.square(next_state.{field.name}))\n    return r, {{\"r\": r}}\n")


TWO_UPDATES = {"num_envs": 4, "num_steps": 8, "total_timesteps": 64, "num_minibatches": 2, "update_epochs": 1,
               "num_eval_envs": 2, "chunk_updates": 2}


def check_env(source: str, extra: dict | None = None, train: dict | None = None) -> Row:
    """Every check for one environment source; the first failure ends the row with its reason."""
    from rewardsmith.tasks import own_env
    from rewardsmith.tasks.action_check import check_action
    from rewardsmith.tasks.registry import load_task_file, task_from_mapping

    row = Row(env=source)
    t0 = time.time()
    stage = "schema"
    try:
        task = task_from_mapping(own_env.task_mapping({"env": source, **(extra or {})}), where="task.env")
        row.fields, row.action = len(task.schema.fields), task.schema.action.describe().split(". ")[0]
        stage = "action space"
        space = own_space(task.make_env())
        if not _matches(task.schema.action, space):
            raise AssertionError(f"inferred {task.schema.action} but the environment's space is {space}")
        stage = "action reaches env"
        check = check_action(task)
        if not check.reaches:
            raise AssertionError(check.message(task))
        stage = "two PPO updates"
        fitness = _two_updates(task, train)
        stage = "fitness"
        if not np.isfinite(fitness):
            raise AssertionError(f"fitness {fitness}")
        stage = "task file reloads"
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "task.yaml"
            path.write_text(yaml.safe_dump(dict(task.spec), sort_keys=False))
            again = load_task_file(path)
            if again.schema != task.schema:
                raise AssertionError("the written task file gives another schema")
        row.ok, stage = True, ""
    except Exception as e:  # noqa: BLE001 - one row per environment, whatever went wrong
        text = f"{type(e).__name__}: {e}"
        row.needs_data = any(w in text for w in ("urlopen", "URLError", "Name or service not known",
                                                 "Temporary failure in name resolution"))
        row.reason = text.splitlines()[0][:300] if text.strip() else traceback.format_exc(limit=1)
    row.stage, row.seconds = stage, round(time.time() - t0, 1)
    return row


def _two_updates(task, train: dict | None) -> float:
    import jax

    from rewardsmith.train.population import train_population
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.train.ppo import PPOConfig
    from rewardsmith.validate.trace import shape_check

    validation, branch = shape_check(probe_reward(task.schema), "probe", task, MAX_COMPONENTS)
    if not validation.ok:
        raise AssertionError(f"the probe reward does not trace: {validation.reason}")
    config = PPOConfig.from_dict({**dict(task.ppo), **TWO_UPDATES, **(train or {})})
    out, _ = train_population(task, config, [branch], [0], [0], devices=jax.devices()[:1])
    return float(np.mean(np.asarray(out["eval"]["fitness"], np.float64)))


def table(rows: list[Row]) -> str:
    lines = ["| env | action | fields | pass | seconds | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        note = "needs data it downloads (offline here)" if r.needs_data else (
            f"{r.stage}: {r.reason}" if not r.ok else "")
        lines.append(f"| `{r.env}` | {r.action or 'n/a'} | {r.fields or 'n/a'} | {'yes' if r.ok else 'no'} | "
                     f"{r.seconds:g} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def gymnax_ids() -> list[str]:
    from gymnax.registration import registered_envs

    return [f"gymnax:{e}" for e in registered_envs]


def brax_names() -> list[str]:
    from brax import envs

    return [f"brax:{n}" for n in sorted(envs._envs)]


def summary(rows: list[Row], prefix: str) -> dict[str, Any]:
    mine = [r for r in rows if r.env.startswith(prefix)]
    return {"passed": sum(r.ok for r in mine), "registered": len(mine),
            "needs_data": [r.env for r in mine if r.needs_data],
            "failed": [r.env for r in mine if not r.ok and not r.needs_data]}
