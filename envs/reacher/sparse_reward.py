"""Success only: +1 on every step the fingertip is within 2 cm of the target."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    success = jnp.where(jnp.linalg.norm(next_state.tip_to_target) < 0.02, 1.0, 0.0)
    return success, {"success": success}
