import jax.numpy as jnp


def compute_reward(state, action, next_state):
    height = 10.0 * jnp.maximum(next_state.torso_pos[2] - 1.25, 0.0)
    return height, {"height": height}
