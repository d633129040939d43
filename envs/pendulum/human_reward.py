"""Pendulum-v1's own reward: quadratic cost on angle, angular velocity and torque."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    angle_cost = jnp.square(state.theta)
    velocity_cost = 0.1 * jnp.square(state.theta_dot)
    torque_cost = 0.001 * jnp.sum(jnp.square(action))
    total = -(angle_cost + velocity_cost + torque_cost)
    return total, {"angle_cost": -angle_cost, "velocity_cost": -velocity_cost, "torque_cost": -torque_cost}
