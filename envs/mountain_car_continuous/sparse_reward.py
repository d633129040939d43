"""Success only: +1 on reaching the flag."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    success = jnp.where(next_state.position >= 0.45, 1.0, 0.0)
    return success, {"success": success}
