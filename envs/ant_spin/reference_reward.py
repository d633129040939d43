"""A reference spin reward, written once by hand (not part of the search): turn rate about the
vertical axis, a bonus for staying up and a torque cost."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    spin = next_state.torso_ang_vel[2]
    healthy = jnp.float32(0.5)
    ctrl_cost = -0.5 * jnp.sum(jnp.square(action))
    return spin + healthy + ctrl_cost, {"spin": spin, "healthy": healthy, "ctrl_cost": ctrl_cost}
