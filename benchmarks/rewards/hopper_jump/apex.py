import jax.numpy as jnp


def compute_reward(state, action, next_state):
    z = next_state.torso_pos[2]
    vz = next_state.torso_vel[2]
    apex = z + jnp.square(jnp.maximum(vz, 0.0)) / (2.0 * 9.81)
    height = 5.0 * jnp.maximum(apex - 1.25, 0.0)
    return height, {"apex": height}
