"""gymnax environments behind the ``EnvAdapter`` protocol, plus the classic-control task hooks."""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from rewardsmith.tasks.base import TaskHooks


class GymnaxAdapter:
    """A gymnax environment: by id (``gymnax.make``), or an ``(env, params)`` pair of your own
    (a ``gymnax.environments.environment.Environment`` subclass and its ``EnvParams``)."""

    def __init__(self, env_id: str, env: Any = None, params: Any = None, **env_kwargs: Any) -> None:
        if env is None:
            import gymnax  # imported lazily: it pulls in flax and friends

            env, params = gymnax.make(env_id, **env_kwargs)
        self.env, self.params = env, (env.default_params if params is None else params)
        self.env_id = env_id
        self.obs_size = int(jax.eval_shape(lambda k: self.env.reset_env(k, self.params)[0],
                                           jax.random.PRNGKey(0)).size)
        if not hasattr(self.params, "max_steps_in_episode"):
            raise ValueError(f"the gymnax environment {type(env).__name__}'s params have no max_steps_in_episode "
                             "(subclass gymnax's EnvParams and EnvState, which carry the time limit and step count)")
        self.max_episode_steps = int(self.params.max_steps_in_episode)
        # seconds per step where the environment says (CartPole's tau, Pendulum's dt)
        self.dt = float(getattr(self.params, "tau", getattr(self.params, "dt", 0.05)))

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


def _cartpole_skeleton(v):
    # the cart on the track and the tip of its 1 m pole (x forward, z up)
    x, th = v["x"], v["theta"]
    return jnp.stack([jnp.stack([x, 0.0 * x, 0.1 + 0.0 * x]),
                      jnp.stack([x + jnp.sin(th), 0.0 * x, 0.1 + jnp.cos(th)])])


CARTPOLE = TaskHooks(make_env=_make, state_view=_cartpole_view, fitness_step=_cartpole_fitness,
                     skeleton=_cartpole_skeleton, skeleton_parents=(-1, 0))


# --- Pendulum-v1 -------------------------------------------------------------------------------

def _pendulum_view(s) -> dict:
    theta = _wrap_angle(_f32(s.theta))
    return {"theta": theta, "theta_dot": _f32(s.theta_dot), "cos_theta": jnp.cos(theta),
            "sin_theta": jnp.sin(theta), "torque": _f32(s.last_u), "step": _f32(s.time)}


def _pendulum_fitness(state, action, next_state, env_reward, terminated):
    # Gym's Pendulum return: the classic benchmark number (about -150 solved, -1200 hanging).
    return env_reward


def _pendulum_skeleton(v):
    # the pivot 1.2 m above the ground and the tip of the 1 m pendulum; theta = 0 is upright
    th = v["theta"]
    return jnp.stack([jnp.stack([0.0 * th, 0.0 * th, 1.2 + 0.0 * th]),
                      jnp.stack([jnp.sin(th), 0.0 * th, 1.2 + jnp.cos(th)])])


PENDULUM = TaskHooks(make_env=_make, state_view=_pendulum_view, fitness_step=_pendulum_fitness,
                     skeleton=_pendulum_skeleton, skeleton_parents=(-1, 0))


# --- MountainCarContinuous-v0 ------------------------------------------------------------------

def _mcc_view(s) -> dict:
    return {"position": _f32(s.position), "velocity": _f32(s.velocity), "step": _f32(s.time)}


def _mcc_fitness(state, action, next_state, env_reward, terminated):
    # 1 when the car reaches the flag (the episode ends there): the mean is the success rate.
    return jnp.where(terminated, 1.0, 0.0).astype(jnp.float32)


def _mcc_skeleton(v):
    # the car on the hill (height 0.45 sin(3 x) + 0.55) and the flag at x = 0.45
    p = v["position"]
    flag = 0.45 + 0.0 * p
    return jnp.stack([jnp.stack([p, 0.0 * p, 0.45 * jnp.sin(3.0 * p) + 0.55]),
                      jnp.stack([flag, 0.0 * p, 0.45 * jnp.sin(3.0 * flag) + 0.55]),
                      jnp.stack([flag, 0.0 * p, 0.45 * jnp.sin(3.0 * flag) + 0.75])])


MOUNTAIN_CAR_CONTINUOUS = TaskHooks(make_env=_make, state_view=_mcc_view, fitness_step=_mcc_fitness,
                                    skeleton=_mcc_skeleton, skeleton_parents=(-1, -1, 1))
