"""A reference jump reward, written once by hand (not part of the search): height above standing,
upward speed, a bonus for staying upright and a small torque cost."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    height = 5.0 * jnp.maximum(next_state.torso_pos[2] - 1.25, 0.0)
    rise = jnp.maximum(next_state.torso_vel[2], 0.0)
    healthy = jnp.float32(1.0)
    ctrl_cost = -0.001 * jnp.sum(jnp.square(action))
    return height + rise + healthy + ctrl_cost, {"height": height, "rise": rise, "healthy": healthy,
                                                 "ctrl_cost": ctrl_cost}
