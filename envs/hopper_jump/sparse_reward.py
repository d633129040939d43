"""Success only: +1 on every step the torso is higher than 1.5 m (0.25 m above standing)."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    success = jnp.where(next_state.torso_pos[2] > 1.5, 1.0, 0.0)
    return success, {"success": success}
