import jax.numpy as jnp


def compute_reward(state, action, next_state):
    height = 10.0 * jnp.maximum(next_state.torso_pos[2] - 1.25, 0.0)
    alive = jnp.float32(1.0)
    return height + alive, {"height": height, "alive": alive}
