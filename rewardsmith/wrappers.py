"""Train with a designed reward in your own code: environment wrappers.

gymnax::

    env, params = gymnax.make("CartPole-v1")
    reward = rewardsmith.load_reward("outputs/cartpole/<run>")
    env = rewardsmith.wrappers.GymnaxRewardWrapper(env, reward)
    obs, state = env.reset(key, params)
    obs, state, r, terminated, truncated, info = env.step(key, state, action, params)
    # r is the designed reward; info["reward_components"] holds its named components and
    # info["env_reward"] the environment's own reward.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rewardsmith.export.loaded import LoadedReward
from rewardsmith.tasks import get_task


class GymnaxRewardWrapper:
    """Replaces a gymnax environment's reward with ``reward``, computed on the true next state
    (before the auto-reset); keeps the gymnax 1.x ``step`` signature."""

    def __init__(self, env: Any, reward: LoadedReward, task: str | None = None):
        self._env = env
        self.reward = reward
        self._view = get_task(task or reward.task).hooks.state_view
        self._schema = reward.schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def _state(self, env_state):
        return self._schema.make_state(self._view(env_state))

    def reset(self, key, params=None):
        return self._env.reset(key, params)

    def step(self, key, state, action, params=None):
        params = self._env.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, env_reward, terminated, info = self._env.step_env(key_step, state, action, params)
        total, comps = self.reward(self._state(state), action, self._state(state_st))
        truncated = self._env.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self._env.reset_env(key_reset, params)
        new_state = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), state_re, state_st)
        obs = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), obs_re, obs_st)
        info = {**info, "env_reward": env_reward, "reward_components": comps, "terminated": terminated,
                "truncated": truncated, "final_observation": obs_st}
        return obs, new_state, jnp.asarray(total, jnp.float32), terminated, truncated, info


def _brax_view(reward: LoadedReward, task_name: str | None):
    task = get_task(task_name or reward.task)
    return task, task.hooks.state_view


class BraxRewardWrapper:
    """A Brax ``Wrapper`` that replaces ``state.reward`` with ``reward`` and adds each component to
    ``state.metrics`` as ``reward/<name>``. Wrap the raw environment before Brax's training wrappers::

        env = envs.get_environment("ant", backend="spring")
        env = BraxRewardWrapper(env, rewardsmith.load_reward("outputs/ant/<run>"))
        make_policy, params, metrics = ppo.train(environment=env, num_timesteps=..., ...)

    The step counter and previous action that some schemas expose are kept in ``state.info``.
    """

    def __new__(cls, env: Any, reward: Any, task: str | None = None):
        from brax.envs.base import Wrapper

        from rewardsmith.tasks.brax_env import BraxEnvState

        _, view = _brax_view(reward, task)
        names = tuple(getattr(reward, "components", ()))

        class _Wrapper(Wrapper):
            def _env_state(self, s):
                return BraxEnvState(inner=s, t=s.info["rs_t"], prev_action=s.info["rs_prev_action"],
                                    dt=jnp.float32(self.env.dt))

            def reset(self, rng):
                s = self.env.reset(rng)
                info = {**s.info, "rs_t": jnp.int32(0), "rs_prev_action": jnp.zeros(self.env.action_size)}
                metrics = {**s.metrics, **{f"reward/{n}": jnp.float32(0.0) for n in names}}
                return s.replace(info=info, metrics=metrics)

            def step(self, state, action):
                ns = self.env.step(state, action)
                ns = ns.replace(info={**ns.info, "rs_t": state.info["rs_t"] + 1,
                                      "rs_prev_action": jnp.asarray(action, jnp.float32)})
                s_view = reward.schema.make_state(view(self._env_state(state)))
                ns_view = reward.schema.make_state(view(self._env_state(ns)))
                total, comps = reward(s_view, action, ns_view)
                metrics = {**ns.metrics, **{f"reward/{n}": jnp.asarray(comps[n], jnp.float32) for n in names}}
                return ns.replace(reward=jnp.asarray(total, jnp.float32), metrics=metrics)

        return _Wrapper(env)
