"""The task record: environment, description, schema, ground-truth fitness and baselines."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Protocol

import jax
import jax.numpy as jnp

from rewardsmith.tasks.schema import StateSchema


class EnvAdapter(Protocol):
    """A JAX environment seen through the few calls the trainer needs.

    ``step`` never auto-resets: the trainer computes rewards on the true next state and
    resets afterwards.
    """

    obs_size: int
    max_episode_steps: int

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]: ...

    def step(
        self, key: jax.Array, env_state: Any, action: jax.Array
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array]:
        """Return (obs, env_state, env_reward, terminated, truncated)."""
        ...


_ENVS: dict[tuple, "EnvAdapter"] = {}


def config_key(config: Mapping[str, Any]) -> str:
    """An environment configuration as a hashable, order-free key."""
    return json.dumps(dict(config), sort_keys=True, default=repr)


def shared_env(make_env: Callable[[Mapping[str, Any]], "EnvAdapter"], config: Mapping[str, Any]) -> "EnvAdapter":
    """One adapter per process, maker and configuration. Adapters are stateless after construction,
    so the trace check, the training program, the rollout recorder and schema inference share it
    (building a Brax environment parses its model and traces a reset)."""
    key = (make_env, config_key(config))
    if key not in _ENVS:
        _ENVS[key] = make_env(config)
    return _ENVS[key]


@dataclasses.dataclass(frozen=True)
class TaskHooks:
    """Trusted task code: how to read the schema out of an env state, and how to score it.

    ``state_view(env_state) -> dict`` returns every schema field as a float32 array.
    ``fitness_step(state, action, next_state, env_reward, terminated) -> scalar`` is combined over
    an episode by the task's ``fitness_reduce`` (summed, or its maximum taken); the mean over
    episodes is the task's ground-truth fitness.
    """

    make_env: Callable[[Mapping[str, Any]], EnvAdapter]
    state_view: Callable[[Any], dict]
    fitness_step: Callable[..., jax.Array]
    # Optional stick-figure for the rollout viewer, from the schema view: ``skeleton(view) -> [B, 3]``
    # world positions (x forward, y left, z up) of B points, and each point's parent (-1: none).
    # Adapters that know their bodies (Brax) provide ``body_positions``/``body_parents`` instead.
    skeleton: Callable[[dict], jax.Array] | None = None
    skeleton_parents: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    description: str
    schema: StateSchema
    hooks: TaskHooks
    env_config: Mapping[str, Any]
    fitness_doc: str
    human_reward: str  # source of the environment's own reward, in the reward contract
    sparse_reward: str  # source of the success-only reward, in the reward contract
    ppo: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # named training budgets, e.g. cpu_smoke and gpu (selected with train=<preset>)
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # Fitness at or above this counts as solved (used for early stop and reporting).
    fitness_target: float | None = None
    # What the environment's own termination means: "failure", "success" or "none" (time limit only).
    termination: str = "none"
    # How an episode's per-step fitness values combine: "sum" (distance run, steps alive) or "max"
    # (the best moment: highest jump).
    fitness_reduce: str = "sum"
    # What the "human" baseline is: the environment's own reward ("human baseline"), or, for a new
    # behaviour with no such reward, a reference reward written once by hand outside the search.
    human_label: str = "human baseline"
    source_file: str = ""
    # your own environment (env.source): its source trimmed for the prompt, and the task-file
    # mapping it was built from (written into the run directory for the worker and resume)
    source_excerpt: str = ""
    spec: Mapping[str, Any] | None = None

    def with_env_overrides(self, overrides: Mapping[str, Any] | None) -> "Task":
        """The same task with some environment settings replaced (e.g. Brax ``physics``)."""
        if not overrides:
            return self
        return dataclasses.replace(self, env_config={**self.env_config, **overrides})

    def make_env(self) -> EnvAdapter:
        """The task's environment adapter, shared within the process (``shared_env``)."""
        return shared_env(self.hooks.make_env, self.env_config)

    def skeleton(self, env: EnvAdapter | None = None):
        """``(env_state -> positions [B, 3], parents)`` for the rollout viewer, or None."""
        env = env if env is not None else self.make_env()
        if hasattr(env, "body_positions") and hasattr(env, "body_parents"):
            return env.body_positions, [int(p) for p in env.body_parents()]
        if self.hooks.skeleton is not None:
            view, fn = self.hooks.state_view, self.hooks.skeleton
            return (lambda es: jnp.asarray(fn(view(es)), jnp.float32)), list(self.hooks.skeleton_parents)
        return None

    def prompt_view(self) -> dict:
        """What a proposer may see: never the fitness function or the baselines."""
        return {"name": self.name, "description": self.description, "schema": self.schema.describe(),
                "source_excerpt": self.source_excerpt}
