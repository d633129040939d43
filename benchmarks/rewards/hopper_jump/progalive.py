import jax.numpy as jnp


def compute_reward(state, action, next_state):
    progress = (next_state.torso_pos[2] - state.torso_pos[2]) / next_state.dt
    alive = jnp.float32(1.0)
    return progress + alive, {"progress": progress, "alive": alive}
