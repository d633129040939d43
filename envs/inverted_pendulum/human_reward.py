"""Brax inverted_pendulum's own reward: +1 for every step the pole is still up."""
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    alive = jnp.float32(1.0)
    return alive, {"alive": alive}
