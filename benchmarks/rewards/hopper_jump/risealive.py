import jax.numpy as jnp


def compute_reward(state, action, next_state):
    rise = jnp.maximum((next_state.torso_pos[2] - state.torso_pos[2]) / next_state.dt, 0.0)
    alive = jnp.float32(1.0)
    return rise + alive, {"rise": rise, "alive": alive}
