"""Success only: +1 on every step the cheetah is upside down and still rotating backwards (the middle
of a back flip, not lying on its back)."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    upside_down = jnp.abs(next_state.torso_angle) > 0.8 * jnp.pi
    rotating = next_state.torso_ang_vel < -1.0
    success = jnp.where(upside_down & rotating, 1.0, 0.0)
    return success, {"success": success}
