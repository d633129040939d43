"""Brax humanoid's own reward: 1.25 * forward velocity + 5 per healthy step - 0.1 * |action|^2.
(Brax measures the centre of mass velocity; the schema exposes the torso, which stands in for it.)"""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    forward = 1.25 * (next_state.torso_pos[0] - state.torso_pos[0]) / next_state.dt
    healthy = jnp.float32(5.0)
    ctrl_cost = -0.1 * jnp.sum(jnp.square(action))
    return forward + healthy + ctrl_cost, {"forward": forward, "healthy": healthy, "ctrl_cost": ctrl_cost}
