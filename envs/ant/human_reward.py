"""Brax ant's own reward: forward velocity + 1 per healthy step - 0.5 * |action|^2."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    forward = (next_state.torso_pos[0] - state.torso_pos[0]) / next_state.dt
    healthy = jnp.float32(1.0)
    ctrl_cost = -0.5 * jnp.sum(jnp.square(action))
    return forward + healthy + ctrl_cost, {"forward": forward, "healthy": healthy, "ctrl_cost": ctrl_cost}
