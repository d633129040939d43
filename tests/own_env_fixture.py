"""A small environment of a user's own, for tests: no rewardsmith code, just reset/step in JAX.

A point mass on a line is pushed by a force in [-1, 1]; it starts at rest somewhere in [-1, 1]
and should come to rest at the origin.
"""
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class PointState:
    pos: jax.Array
    vel: jax.Array


class PointMass:
    action_size = 1
    max_episode_steps = 60

    def __init__(self, dt: float = 0.1):
        self.dt = dt

    def reset(self, key):
        s = PointState(pos=jax.random.uniform(key, (), minval=-1.0, maxval=1.0), vel=jnp.float32(0.0))
        return self._obs(s), s

    def step(self, key, state, action):
        force = jnp.clip(jnp.reshape(action, ()), -1.0, 1.0)
        vel = 0.95 * state.vel + self.dt * force
        s = PointState(pos=state.pos + self.dt * vel, vel=vel)
        reward = -jnp.abs(s.pos)
        return self._obs(s), s, reward, jnp.abs(s.pos) > 3.0

    def _obs(self, s):
        return jnp.stack([s.pos, s.vel])


def make_point_mass(dt: float = 0.1):
    return PointMass(dt)


class DeafPointMass(PointMass):
    """The same body with an actuator that is not connected: the action never reaches it."""

    def step(self, key, state, action):
        return super().step(key, state, jnp.zeros_like(action))


def make_deaf_point_mass():
    return DeafPointMass()


def make_brax_pendulum():
    """A factory returning a Brax Env object (as brax.envs.get_environment gives it)."""
    from brax import envs

    return envs.get_environment("inverted_pendulum", backend="spring")


class EndlessPointMass(PointMass):
    """The same body in episodes that never end early (1000 steps): states a short random rollout
    never reaches (step > 100) come up in every training run."""

    max_episode_steps = 1000

    def step(self, key, state, action):
        obs, s, reward, _ = super().step(key, state, action)
        return obs, s, reward, jnp.bool_(False)


def make_endless_point_mass():
    return EndlessPointMass()
