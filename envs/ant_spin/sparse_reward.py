"""Success only: +1 on every step the ant turns counter-clockwise faster than 2 rad/s."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    success = jnp.where(next_state.torso_ang_vel[2] > 2.0, 1.0, 0.0)
    return success, {"success": success}
