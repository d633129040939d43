"""An environment written the way gymnax users write them, with no rewardsmith code: a
``gymnax.environments.environment.Environment`` subclass with ``EnvState``/``EnvParams`` and a factory
returning ``(env, params)`` as ``gymnax.make`` does. The README's own-environment example runs it:

    PYTHONPATH=$PWD rewardsmith task=own task.env=envs.examples.point_mass:make_env task.kwargs.dt=0.05 \\
        'task.fitness.expression=-jnp.abs(next_state.pos)'

A point mass on a line is pushed by a force in [-1, 1]; it starts at rest somewhere in [-1, 1] and
should come to rest at the origin.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class EnvState(environment.EnvState):
    pos: jax.Array
    vel: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    dt: float = 0.1
    friction: float = 0.05
    max_steps_in_episode: int = 100


class PointMass(environment.Environment[EnvState, EnvParams]):
    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key, state, action, params):
        force = jnp.clip(jnp.reshape(action, ()), -1.0, 1.0)
        vel = (1.0 - params.friction) * state.vel + params.dt * force
        pos = state.pos + params.dt * vel
        state = EnvState(pos=pos, vel=vel, time=state.time + 1)
        done = self.is_terminal(state, params)
        reward = -jnp.abs(pos)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward, done, {})

    def reset_env(self, key, params):
        state = EnvState(pos=jax.random.uniform(key, (), minval=-1.0, maxval=1.0), vel=jnp.float32(0.0), time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.pos, state.vel])

    def is_terminal(self, state, params):
        return (jnp.abs(state.pos) > 3.0) | (state.time >= params.max_steps_in_episode)

    @property
    def name(self) -> str:
        return "PointMass-example"

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32)


def make_env(dt: float = 0.1):
    env = PointMass()
    return env, env.default_params.replace(dt=dt)
