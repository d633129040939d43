"""Success only: +1 on steps where the pendulum is upright (within 0.1 rad) and nearly still."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    upright = jnp.abs(next_state.theta) < 0.1
    still = jnp.abs(next_state.theta_dot) < 1.0
    success = jnp.where(upright & still, 1.0, 0.0)
    return success, {"success": success}
