"""Training a generation: every (candidate, seed) member at once, split over all local devices.

Two ways to build the program, one setting (``PPOConfig.program``):

* ``split`` (default): a trainer compiled once per (task, env settings, PPO settings, population
  size, devices) (rollout, learn, evaluate), and a small per-generation reward program that scores
  each member's stored transitions with that member's own reward only (members grouped by
  candidate; no switch over all K). A new generation compiles only its rewards; the trainer comes
  from this process's cache or JAX's persistent compilation cache. Training advances in chunks of
  updates, so the caller sees members between chunks and members that went non-finite stop there.
* ``fused``: one program per generation with the rewards inside (``lax.switch`` on each member's
  index); every generation compiles everything again.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

from rewardsmith.tasks.base import Task
from rewardsmith.train.ppo import PPO, PPOConfig, RewardOut, clean_reward, make_train

ChunkCallback = Callable[[int, int, dict], None]  # (updates done, total updates, metrics so far [M, u])


def train_population(task: Task, config: PPOConfig, branches: Sequence[Callable], member_branch: Sequence[int],
                     member_seed: Sequence[int], devices: Sequence[Any] | None = None,
                     on_chunk: ChunkCallback | None = None, population_size: int | None = None) -> tuple[dict, dict]:
    """Train every member; returns (outputs as numpy with leading member axis, timing).

    Members are independent, so the population axis is split evenly over ``devices`` (both CPU
    cores as virtual host devices, or every GPU); it is padded with copies of member 0 to a
    multiple of the device count and the padding is dropped from the outputs. ``population_size``
    (the run's usual generation size) pads a smaller generation up to it when that costs at most
    twice the members, so every generation of a run shares one compiled trainer.
    """
    devices = list(devices if devices is not None else jax.devices())
    n = len(member_branch)
    if n == 0:
        raise ValueError("empty population")
    d = max(1, min(len(devices), n))
    devices = devices[:d]
    size = n
    if config.program == "split" and population_size and n <= population_size <= 2 * n:
        size = population_size
    pad = (-size) % d + (size - n)
    idx = np.asarray(list(member_branch) + [member_branch[0]] * pad, np.int32)
    seeds = np.asarray(list(member_seed) + [member_seed[0]] * pad, np.uint32)
    if config.program == "fused":
        out, timing = _train_fused(task, config, branches, idx, seeds, devices)
    else:
        trainer = Trainer.get(task, config, len(idx), tuple(devices))
        out, timing = trainer.train(branches, idx, seeds, on_chunk=on_chunk, n_real=n)
    out = jax.tree.map(lambda x: np.asarray(x)[:n], out)
    return out, {**timing, "devices": d, "members": n, "padding": pad, "program": config.program}


def _over_members(fn: Callable, devices: Sequence[Any], n_args: int) -> Callable:
    """vmap ``fn`` over a leading member axis and split that axis over ``devices``."""
    f = jax.vmap(fn)
    if len(devices) > 1:
        mesh = Mesh(np.asarray(devices), ("members",))
        f = jax.shard_map(f, mesh=mesh, in_specs=(P("members"),) * n_args, out_specs=P("members"), check_vma=False)
    return f


def _train_fused(task, config, branches, idx, seeds, devices) -> tuple[dict, dict]:
    program = jax.jit(_over_members(make_train(config, task, list(branches)), devices, 2))
    rngs = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    t0 = time.perf_counter()
    compiled = program.lower(rngs, jnp.asarray(idx)).compile()
    t1 = time.perf_counter()
    out = jax.device_get(jax.block_until_ready(compiled(rngs, jnp.asarray(idx))))
    return out, {"compile_s": t1 - t0, "train_s": time.perf_counter() - t1, "reward_compile_s": 0.0}


@dataclasses.dataclass
class _Program:
    fn: Callable
    compiled: Any = None


class Trainer:
    """The reward-free half of a generation's training, compiled once and kept for the process:
    ``init`` (seeds -> carry), ``rollout``, ``learn_rollout`` (an update, with an ``active`` mask:
    stopped members keep their state; then the next rollout), ``evaluate`` and ``eval_stats``, each
    vmapped over members and split over devices."""

    _cache: dict[tuple, "Trainer"] = {}

    @classmethod
    def get(cls, task: Task, config: PPOConfig, n_members: int, devices: tuple) -> "Trainer":
        key = (task.name, task.source_file, tuple(sorted(task.env_config.items())), config, n_members,
               tuple(str(d) for d in devices))
        if key not in cls._cache:
            cls._cache[key] = cls(task, config, n_members, devices)
        return cls._cache[key]

    def __init__(self, task: Task, config: PPOConfig, n_members: int, devices: tuple):
        self.ppo = ppo = PPO(config, task)
        self.config = config
        self.devices = devices
        self.n_members = n_members
        if len(devices) > 1:
            self.sharding = NamedSharding(Mesh(np.asarray(devices), ("members",)), P("members"))
        else:
            self.sharding = SingleDeviceSharding(devices[0])

        def learn_rollout(c, tr, rew, active):
            """One update (stopped members keep their state), then the next update's rollout: one call
            per update besides the rewards."""
            new, metrics = ppo.learn(c, tr, rew)
            c = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, c)
            c, tr = ppo.rollout(c)
            return c, metrics, tr

        self._programs = {
            "init": _Program(jax.jit(_over_members(ppo.init, devices, 1))),
            "rollout": _Program(jax.jit(_over_members(ppo.rollout, devices, 1))),
            "learn_rollout": _Program(jax.jit(_over_members(learn_rollout, devices, 4))),
            "evaluate": _Program(jax.jit(_over_members(ppo.evaluate, devices, 1))),
            "eval_stats": _Program(jax.jit(_over_members(PPO.eval_stats, devices, 2))),
            "finite": _Program(jax.jit(_over_members(ppo.params_finite, devices, 1))),
        }
        self.compile_s = 0.0
        self.compile_detail: dict[str, tuple[float, float]] = {}  # program -> (trace and lower s, compile s)

    def _run(self, name: str, *args):
        prog = self._programs[name]
        if prog.compiled is None:
            t0 = time.perf_counter()
            lowered = prog.fn.lower(*args)
            t1 = time.perf_counter()
            prog.compiled = lowered.compile()
            self.compile_s += time.perf_counter() - t0
            self.compile_detail[name] = (round(t1 - t0, 2), round(time.perf_counter() - t1, 2))
        return prog.compiled(*args)

    def reward_program(self, branches: Sequence[Callable], member_branch: np.ndarray) -> Callable:
        """Each member's transitions (leading axes [M, T, N]) scored by its own candidate's reward.

        Each device scores only its own members: under ``shard_map`` a switch on the device index
        (one scalar, so only the taken branch runs) picks that device's runs of candidates."""
        per_device = len(member_branch) // len(self.devices)

        def local_program(members: np.ndarray) -> Callable:
            runs: list[tuple[Callable, int, int]] = []  # consecutive members with the same candidate
            for m, b in enumerate(members):
                if runs and runs[-1][0] is branches[b] and runs[-1][2] == m:
                    runs[-1] = (runs[-1][0], runs[-1][1], m + 1)
                else:
                    runs.append((branches[b], m, m + 1))

            def rewards(state, action, next_state) -> RewardOut:
                totals, comps = [], []
                for fn, a, b in runs:
                    sub = jax.tree.map(lambda x: x[a:b], (state, action, next_state))
                    t, c = jax.vmap(jax.vmap(jax.vmap(fn)))(*sub)
                    totals.append(t)
                    comps.append(c)
                return clean_reward(jnp.concatenate(totals), jnp.concatenate(comps))

            return rewards

        local = [local_program(member_branch[i * per_device:(i + 1) * per_device]) for i in range(len(self.devices))]
        if len(local) == 1:
            return jax.jit(local[0])

        def on_device(state, action, next_state):
            return jax.lax.switch(jax.lax.axis_index("members"), local, state, action, next_state)

        mesh = self.sharding.mesh
        return jax.jit(jax.shard_map(on_device, mesh=mesh, in_specs=(P("members"),) * 3, out_specs=P("members"),
                                     check_vma=False))

    def train(self, branches: Sequence[Callable], member_branch: np.ndarray, seeds: np.ndarray,
              on_chunk: ChunkCallback | None = None, n_real: int | None = None) -> tuple[dict, dict]:
        compile_before = self.compile_s
        t_start = time.perf_counter()
        reward_compile = 0.0
        reward = self.reward_program(branches, member_branch)
        compiled_rewards: dict[tuple, Any] = {}

        def score(state, action, next_state) -> RewardOut:
            nonlocal reward_compile
            key = action.shape
            if key not in compiled_rewards:
                t0 = time.perf_counter()
                compiled_rewards[key] = reward.lower(state, action, next_state).compile()
                reward_compile += time.perf_counter() - t0
            return compiled_rewards[key](state, action, next_state)

        rngs = jax.device_put(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)), self.sharding)
        carry = self._run("init", rngs)
        n_updates = self.ppo.num_updates
        chunk = self.config.chunk_updates or max(1, -(-n_updates // 10))
        active_np = np.ones(len(seeds), bool)
        active = jax.device_put(jnp.asarray(active_np), self.sharding)
        metrics: list[dict] = []
        stopped_at = np.full(len(seeds), -1, np.int64)
        carry, tr = self._run("rollout", carry)
        for u in range(n_updates):
            rew = score(tr.state, tr.env_action, tr.next_state)
            # (after the last update the rollout is one spare: cheaper than compiling learn alone)
            carry, m, tr = self._run("learn_rollout", carry, tr, rew, active)
            metrics.append(m)
            if (u + 1) % chunk == 0 or u + 1 == n_updates:
                # between chunks: stop members that went non-finite, show the rest to the caller
                host = jax.device_get(metrics[-(u % chunk + 1):])
                finite = np.asarray(jax.device_get(self._run("finite", carry)))
                bad = (np.stack([np.asarray(h["nonfinite"]) for h in host], 1).sum(1) > 0) | ~finite
                newly = bad & active_np
                if newly.any():
                    stopped_at[newly] = u + 1
                    active_np = active_np & ~bad
                    active = jax.device_put(jnp.asarray(active_np), self.sharding)
                if on_chunk is not None:
                    so_far = _stack(jax.device_get(metrics))
                    on_chunk(u + 1, n_updates, {k: v[:n_real] for k, v in so_far.items()})
        t_trained = time.perf_counter()
        ev = self._run("evaluate", carry)
        evaluation = self._run("eval_stats", ev, score(ev.state, ev.env_action, ev.next_state))
        finite = self._run("finite", carry)
        curve = _stack(jax.device_get(metrics))
        out = {"curve": curve, "eval": jax.device_get(evaluation), "params_finite": np.asarray(jax.device_get(finite)),
               "nonfinite_rewards": curve["nonfinite"].sum(1), "stopped_at_update": stopped_at}
        total = time.perf_counter() - t_start
        compile_s = self.compile_s - compile_before + reward_compile
        return out, {"compile_s": compile_s, "reward_compile_s": reward_compile, "train_s": total - compile_s,
                     "eval_s": time.perf_counter() - t_trained, "updates": n_updates, "chunk_updates": chunk}


def _stack(metrics: list[dict]) -> dict:
    """Per-update metrics [M] (or [M, C]) -> one array per key with axes [M, updates, ...]."""
    return {k: np.stack([np.asarray(m[k]) for m in metrics], 1) for k in metrics[0]}
