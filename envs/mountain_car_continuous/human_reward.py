"""MountainCarContinuous-v0's own reward: -0.1 * force^2 each step, +100 on reaching the flag."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    force_cost = -0.1 * jnp.sum(jnp.square(action))
    goal = jnp.where(next_state.position >= 0.45, 100.0, 0.0)
    return force_cost + goal, {"force_cost": force_cost, "goal": goal}
