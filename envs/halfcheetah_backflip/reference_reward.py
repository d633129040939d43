"""A reference back-flip reward, written once by hand (not part of the search): backward pitch rate
and a small torque cost."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    flip = -next_state.torso_ang_vel
    ctrl_cost = -0.1 * jnp.sum(jnp.square(action))
    return flip + ctrl_cost, {"flip": flip, "ctrl_cost": ctrl_cost}
