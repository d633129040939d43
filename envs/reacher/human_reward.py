"""Brax reacher's own reward: minus the fingertip-to-target distance minus |action|^2."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    distance = -jnp.linalg.norm(next_state.tip_to_target)
    ctrl_cost = -jnp.sum(jnp.square(action))
    return distance + ctrl_cost, {"distance": distance, "ctrl_cost": ctrl_cost}
