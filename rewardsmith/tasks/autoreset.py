"""Auto-reset of a batch of environments, written once for the trainer and the rollout check."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def reset_where_done(env, key, done, next_state):
    """Where ``done``, a fresh reset state replaces ``next_state`` (one reset key per environment from
    ``key``); returns the reset observations and the states the batch goes on from. Called after the
    next state was viewed, so the reward and the fitness see the state the episode ended in."""
    obs_r, es_r = jax.vmap(env.reset)(jax.random.split(key, done.shape[0]))
    return obs_r, jax.tree.map(lambda a, b: jax.vmap(jnp.where)(done, a, b), es_r, next_state)
