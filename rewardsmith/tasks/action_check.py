"""Does the policy's action reach the environment? Checked once when a task is loaded.

A wrong action spec (a Box space read as one discrete action, an action the environment never
reads) makes every policy behave the same: every candidate then reports the same fitness and the
search has nothing to choose from. So before any work: from a few states along random episodes,
the lowest and the highest action (for a discrete action: the first and the last) are applied with
the same key, and some next state, observation, reward or termination must differ.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rewardsmith.tasks.base import Task
from rewardsmith.tasks.schema import ActionSpec


@dataclasses.dataclass(frozen=True)
class ActionCheck:
    reaches: bool
    states: int  # states tried
    differing: int  # states at which the two actions gave different outcomes

    def message(self, task: Task) -> str:
        how = ("task.schema.action='{kind: continuous, shape: [N], low: L, high: H}' (or schema.action in a task "
               "file)")
        return (f"the action does not reach the environment of task {task.name}: at {self.states} states along "
                f"random episodes, the {_names(task.schema.action)} gave the same next state, reward and "
                f"termination; the action is taken as '{task.schema.action.describe()}'. If that is not the "
                f"environment's action, set it: {how}")


def _names(spec: ActionSpec) -> str:
    return (f"actions 0 and {spec.n - 1}" if spec.kind == "discrete"
            else f"actions {spec.low:g} and {spec.high:g} (every component)")


def _extremes(spec: ActionSpec) -> tuple[jax.Array, jax.Array]:
    if spec.kind == "discrete":
        return jnp.int32(0), jnp.int32(max(spec.n - 1, 0))
    return jnp.full(spec.shape, spec.low, jnp.float32), jnp.full(spec.shape, spec.high, jnp.float32)


def _random(spec: ActionSpec, key) -> jax.Array:
    if spec.kind == "discrete":
        return jax.random.randint(key, (), 0, max(spec.n, 1)).astype(jnp.int32)
    return jax.random.uniform(key, spec.shape, jnp.float32, spec.low, spec.high)


def _numeric(tree) -> list[jax.Array]:
    out = []
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "dtype") and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) \
                and (jnp.issubdtype(leaf.dtype, jnp.number) or jnp.issubdtype(leaf.dtype, jnp.bool_)):
            out.append(leaf)
    return out


def check_action(task: Task, episodes: int = 4, steps: int = 16, seed: int = 0) -> ActionCheck:
    """Run ``episodes`` random episodes for ``steps`` steps and, at each state, compare the
    outcome of the two extreme actions (one jitted program)."""
    env = task.make_env()
    spec = task.schema.action
    lo, hi = _extremes(spec)

    def differs(a, b) -> jax.Array:
        return jnp.any(jnp.stack([jnp.any(x != y) for x, y in zip(_numeric(a), _numeric(b))]))

    def episode(key):
        k_reset, k_run = jax.random.split(key)
        _, s0 = env.reset(k_reset)

        def body(s, k):
            k_step, k_act, k_reset = jax.random.split(k, 3)
            r = _random(spec, k_act)
            # the three actions in one step call: the same key and state for each
            outs = jax.vmap(lambda a: env.step(k_step, s, a))(jnp.stack([lo, hi, r]))
            pick = lambda i: jax.tree.map(lambda x: x[i], outs)  # noqa: E731
            d = differs(pick(0), pick(1))
            _, s_r, _, term, trunc = pick(2)
            _, s_new = env.reset(k_reset)
            s_next = jax.tree.map(lambda x, y: jnp.where(term | trunc, x, y), s_new, s_r)
            return s_next, d

        return jax.lax.scan(body, s0, jax.random.split(k_run, steps))[1]

    d = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(seed), episodes))
    n_diff = int(jnp.sum(d))
    return ActionCheck(reaches=n_diff > 0, states=int(d.size), differing=n_diff)


def _cache_path(task: Task):
    """Built-in and task-file tasks (trusted hooks, fixed files) keep a passed check on disk, keyed by
    the task file, the environment settings and the action; your own environment is checked every run
    (its code may have changed)."""
    import hashlib
    import json
    from pathlib import Path

    from rewardsmith.rundir import user_cache_dir
    from rewardsmith.tasks.base import config_key

    if task.spec is not None:
        return None
    text = Path(task.source_file).read_text() if task.source_file and Path(task.source_file).is_file() else ""
    key = json.dumps([task.name, config_key(task.env_config), task.schema.to_json()["action"], text])
    return user_cache_dir("action_check") / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


def require_action(task: Task) -> None:
    """Raise ValueError (one line) when the task's action does not reach its environment."""
    from rewardsmith.rundir import atomic_write_json

    path = _cache_path(task)
    if path is not None and path.is_file():
        return
    result = check_action(task)
    if not result.reaches:
        raise ValueError(result.message(task))
    if path is not None:
        try:
            atomic_write_json(path, dataclasses.asdict(result))
        except OSError:
            pass  # an unwritable cache only costs the check again next run
