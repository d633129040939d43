"""Recording a trained policy's rollout for viewing: body positions over one episode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rewardsmith.tasks.base import Task
from rewardsmith.train.ppo import PPOConfig, deterministic_action

MAX_FRAMES = 250


def can_record(env) -> bool:
    return hasattr(env, "body_positions") and hasattr(env, "body_parents")


def record_rollout(task: Task, config: PPOConfig, policy_state: dict, seed: int = 0) -> dict:
    """One deterministic episode; returns frames of body positions [T, bodies, 3] and the skeleton."""
    env = task.make_env()
    stride = max(1, env.max_episode_steps // MAX_FRAMES)

    @jax.jit
    def run(key):
        obs, es = env.reset(key)

        def step(c, k):
            obs, es, alive = c
            a = deterministic_action(config, task, policy_state, obs)
            obs2, es2, _, term, trunc = env.step(k, es, a)
            return (obs2, es2, alive & ~(term | trunc)), (env.body_positions(es2), alive)

        first = env.body_positions(es)
        _, (pos, alive) = jax.lax.scan(step, (obs, es, jnp.bool_(True)), jax.random.split(key, env.max_episode_steps))
        return first, pos, alive

    first, pos, alive = jax.device_get(run(jax.random.PRNGKey(seed)))
    n = int(np.sum(alive))  # frames while the episode was running
    frames = np.concatenate([first[None], np.asarray(pos)[:n]], 0)[::stride]
    return {"parents": [int(p) for p in env.body_parents()], "dt": float(getattr(env, "dt", 0.05)) * stride,
            "frames": np.round(frames, 4).tolist(), "episode_steps": n}
