"""One jitted program per generation: vmap over (candidate, seed) members, split over devices."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from rewardsmith.tasks.base import Task
from rewardsmith.train.ppo import PPOConfig, make_train


def train_population(task: Task, config: PPOConfig, branches: Sequence[Callable], member_branch: Sequence[int],
                     member_seed: Sequence[int], devices: Sequence[Any] | None = None) -> tuple[dict, dict]:
    """Train every member in one program; returns (outputs as numpy with leading member axis, timing).

    Members are independent, so the population axis is split evenly over ``devices`` (both CPU
    cores as virtual host devices, or every GPU); it is padded with copies of member 0 to a
    multiple of the device count and the padding is dropped from the outputs.
    """
    devices = list(devices if devices is not None else jax.devices())
    n = len(member_branch)
    if n == 0:
        raise ValueError("empty population")
    d = max(1, min(len(devices), n))
    devices = devices[:d]
    pad = (-n) % d
    idx = np.asarray(list(member_branch) + [member_branch[0]] * pad, np.int32)
    seeds = np.asarray(list(member_seed) + [member_seed[0]] * pad, np.uint32)
    train = jax.vmap(make_train(config, task, list(branches)))
    if d > 1:
        mesh = Mesh(np.asarray(devices), ("members",))
        train = jax.shard_map(train, mesh=mesh, in_specs=(P("members"), P("members")),
                              out_specs=P("members"), check_vma=False)
    program = jax.jit(train)
    rngs = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    t0 = time.perf_counter()
    compiled = program.lower(rngs, jnp.asarray(idx)).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(rngs, jnp.asarray(idx)))
    t2 = time.perf_counter()
    out = jax.tree.map(lambda x: np.asarray(x)[:n], jax.device_get(out))
    return out, {"compile_s": t1 - t0, "train_s": t2 - t1, "devices": d, "members": n, "padding": pad}
