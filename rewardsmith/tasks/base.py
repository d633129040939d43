"""The task record: environment, description, schema, ground-truth fitness and baselines."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax

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


@dataclasses.dataclass(frozen=True)
class TaskHooks:
    """Trusted task code: how to read the schema out of an env state, and how to score it.

    ``state_view(env_state) -> dict`` returns every schema field as a float32 array.
    ``fitness_step(state, action, next_state, env_reward, terminated) -> scalar`` is summed over
    an episode; the mean episodic sum is the task's ground-truth fitness.
    """

    make_env: Callable[[Mapping[str, Any]], EnvAdapter]
    state_view: Callable[[Any], dict]
    fitness_step: Callable[..., jax.Array]


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
    source_file: str = ""

    def with_env_overrides(self, overrides: Mapping[str, Any] | None) -> "Task":
        """The same task with some environment settings replaced (e.g. Brax ``physics``)."""
        if not overrides:
            return self
        return dataclasses.replace(self, env_config={**self.env_config, **overrides})

    def make_env(self) -> EnvAdapter:
        return self.hooks.make_env(self.env_config)

    def prompt_view(self) -> dict:
        """What a proposer may see: never the fitness function or the baselines."""
        return {"name": self.name, "description": self.description, "schema": self.schema.describe()}
