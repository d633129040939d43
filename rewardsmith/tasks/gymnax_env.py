"""gymnax environments behind the ``EnvAdapter`` protocol, plus the classic-control task hooks."""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from rewardsmith.tasks.base import TaskHooks


class GymnaxAdapter:
    def __init__(self, env_id: str, **env_kwargs: Any) -> None:
        import gymnax  # imported lazily: it pulls in flax and friends

        self.env, self.params = gymnax.make(env_id, **env_kwargs)
        self.env_id = env_id
        self.obs_size = int(jax.eval_shape(lambda k: self.env.reset_env(k, self.params)[0],
                                           jax.random.PRNGKey(0)).size)
        self.max_episode_steps = int(self.params.max_steps_in_episode)

    def reset(self, key):
        obs, state = self.env.reset_env(key, self.params)
        return obs.reshape(-1).astype(jnp.float32), state

    def step(self, key, env_state, action):
        obs, state, reward, terminated, _ = self.env.step_env(key, env_state, action, self.params)
        truncated = self.env.is_truncated(state, self.params)
        return (obs.reshape(-1).astype(jnp.float32), state, jnp.asarray(reward, jnp.float32).reshape(()),
                jnp.asarray(terminated, bool).reshape(()), jnp.asarray(truncated, bool).reshape(()))


def _make(config: Mapping[str, Any]) -> GymnaxAdapter:
    return GymnaxAdapter(config["id"], **dict(config.get("kwargs", {})))


def _f32(x):
    return jnp.asarray(x, jnp.float32).reshape(())


def _wrap_angle(theta):
    return jnp.mod(theta + math.pi, 2 * math.pi) - math.pi


# --- CartPole-v1 -------------------------------------------------------------------------------

def _cartpole_view(s) -> dict:
    return {"x": _f32(s.x), "x_dot": _f32(s.x_dot), "theta": _f32(s.theta),
            "theta_dot": _f32(s.theta_dot), "step": _f32(s.time)}


def _cartpole_fitness(state, action, next_state, env_reward, terminated):
    # One point per step the pole stays up: the episodic sum is the episode length (max 500).
    return jnp.float32(1.0)


CARTPOLE = TaskHooks(make_env=_make, state_view=_cartpole_view, fitness_step=_cartpole_fitness)


# --- Pendulum-v1 -------------------------------------------------------------------------------

def _pendulum_view(s) -> dict:
    theta = _wrap_angle(_f32(s.theta))
    return {"theta": theta, "theta_dot": _f32(s.theta_dot), "cos_theta": jnp.cos(theta),
            "sin_theta": jnp.sin(theta), "torque": _f32(s.last_u), "step": _f32(s.time)}


def _pendulum_fitness(state, action, next_state, env_reward, terminated):
    # Gym's Pendulum return: the classic benchmark number (about -150 solved, -1200 hanging).
    return env_reward


PENDULUM = TaskHooks(make_env=_make, state_view=_pendulum_view, fitness_step=_pendulum_fitness)


# --- MountainCarContinuous-v0 ------------------------------------------------------------------

def _mcc_view(s) -> dict:
    return {"position": _f32(s.position), "velocity": _f32(s.velocity), "step": _f32(s.time)}


def _mcc_fitness(state, action, next_state, env_reward, terminated):
    # 1 when the car reaches the flag (the episode ends there): the mean is the success rate.
    return jnp.where(terminated, 1.0, 0.0).astype(jnp.float32)


MOUNTAIN_CAR_CONTINUOUS = TaskHooks(make_env=_make, state_view=_mcc_view, fitness_step=_mcc_fitness)
