"""Brax halfcheetah's own reward: forward velocity - 0.1 * |action|^2."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    forward = (next_state.torso_pos[0] - state.torso_pos[0]) / next_state.dt
    ctrl_cost = -0.1 * jnp.sum(jnp.square(action))
    return forward + ctrl_cost, {"forward": forward, "ctrl_cost": ctrl_cost}
