"""Success only: +1 on every step the torso is more than 2 m ahead (+x) of the origin."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    success = jnp.where(next_state.torso_pos[0] > 2.0, 1.0, 0.0)
    return success, {"success": success}
