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

from rewardsmith.tasks.base import Task, config_key
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
        key = (task.name, task.source_file, config_key(task.env_config), config, n_members,
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

    def scorer(self, branches: Sequence[Callable], member_branch: np.ndarray) -> "_Scorer":
        return _Scorer(self.reward_program(branches, member_branch))

    def chunk(self) -> int:
        return self.config.chunk_updates or max(1, -(-self.ppo.num_updates // 10))

    def start(self, seeds: np.ndarray) -> "_Members":
        rngs = jax.device_put(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)), self.sharding)
        carry = self._run("init", rngs)
        carry, tr = self._run("rollout", carry)
        n = len(seeds)
        return _Members(carry, tr, np.ones(n, bool), np.full(n, -1, np.int64), [])

    def adopt(self, carry, tr, active: np.ndarray, stopped_at: np.ndarray) -> "_Members":
        """Members taken over from another population (host arrays, this trainer's member count)."""
        return _Members(jax.device_put(carry, self.sharding), jax.device_put(tr, self.sharding),
                        active.copy(), stopped_at.copy(), [])

    def advance(self, run: "_Members", score: "_Scorer", u0: int, u1: int,
                on_check: Callable[[int], None] | None = None) -> None:
        """Updates ``u0 .. u1-1`` of every member; every chunk (and at ``u1``) members that went
        non-finite are stopped (they keep their state) and ``on_check(updates done)`` is called."""
        chunk = self.chunk()
        active = jax.device_put(jnp.asarray(run.active), self.sharding)
        pending: list[dict] = []
        for u in range(u0, u1):
            rew = score(run.tr.state, run.tr.env_action, run.tr.next_state)
            # (after the last update the rollout is one spare: cheaper than compiling learn alone)
            run.carry, m, run.tr = self._run("learn_rollout", run.carry, run.tr, rew, active)
            pending.append(m)
            if (u + 1) % chunk == 0 or u + 1 == u1:
                host = jax.device_get(pending)
                pending = []
                run.metrics.extend(host)
                finite = np.asarray(jax.device_get(self._run("finite", run.carry)))
                bad = (np.stack([np.asarray(h["nonfinite"]) for h in host], 1).sum(1) > 0) | ~finite
                newly = bad & run.active
                if newly.any():
                    run.stopped_at[newly] = u + 1
                    run.active = run.active & ~bad
                    active = jax.device_put(jnp.asarray(run.active), self.sharding)
                if on_check is not None:
                    on_check(u + 1)

    def finish(self, run: "_Members", score: "_Scorer") -> dict:
        """Evaluate every member as it stands; outputs as numpy with a leading member axis."""
        ev = self._run("evaluate", run.carry)
        evaluation = self._run("eval_stats", ev, score(ev.state, ev.env_action, ev.next_state))
        finite = self._run("finite", run.carry)
        curve = _stack(run.metrics)
        return {"curve": curve, "eval": jax.device_get(evaluation), "params_finite": np.asarray(jax.device_get(finite)),
                "nonfinite_rewards": curve["nonfinite"].sum(1), "stopped_at_update": run.stopped_at.copy()}

    def train(self, branches: Sequence[Callable], member_branch: np.ndarray, seeds: np.ndarray,
              on_chunk: ChunkCallback | None = None, n_real: int | None = None) -> tuple[dict, dict]:
        compile_before = self.compile_s
        t_start = time.perf_counter()
        score = self.scorer(branches, member_branch)
        n_updates = self.ppo.num_updates
        run = self.start(seeds)

        def show(done: int) -> None:
            if on_chunk is not None:
                so_far = _stack(run.metrics)
                on_chunk(done, n_updates, {k: v[:n_real] for k, v in so_far.items()})

        self.advance(run, score, 0, n_updates, show)
        t_trained = time.perf_counter()
        out = self.finish(run, score)
        total = time.perf_counter() - t_start
        compile_s = self.compile_s - compile_before + score.compile_s
        return out, {"compile_s": compile_s, "reward_compile_s": score.compile_s, "train_s": total - compile_s,
                     "eval_s": time.perf_counter() - t_trained, "updates": n_updates, "chunk_updates": self.chunk()}


@dataclasses.dataclass
class _Members:
    """A population in training: its carry, the rollout for its next update, and per member whether
    it is still updated and where it was stopped; host metrics of every update so far."""

    carry: Any
    tr: Any
    active: np.ndarray
    stopped_at: np.ndarray
    metrics: list[dict]


class _Scorer:
    """A reward program, compiled once per input shape (training rollouts, evaluation episodes)."""

    def __init__(self, program: Callable):
        self.program = program
        self.compiled: dict[tuple, Any] = {}
        self.compile_s = 0.0

    def __call__(self, state, action, next_state) -> RewardOut:
        key = action.shape
        if key not in self.compiled:
            t0 = time.perf_counter()
            self.compiled[key] = self.program.lower(state, action, next_state).compile()
            self.compile_s += time.perf_counter() - t0
        return self.compiled[key](state, action, next_state)


def _stack(metrics: list[dict]) -> dict:
    """Per-update metrics [M] (or [M, C]) -> one array per key with axes [M, updates, ...]."""
    return {k: np.stack([np.asarray(m[k]) for m in metrics], 1) for k in metrics[0]}


# -- successive halving ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Halving:
    """Successive halving over ``rungs`` rungs: at update U/eta^(rungs-1), ..., U/eta every member is
    evaluated on the task's fitness; the best 1/eta of the open candidates (mean over their seeds)
    train on, the rest stop there with the fitness of that evaluation. ``protected`` candidates (the
    baselines) always train the whole budget. ``sizes`` are the run's population sizes per stage, so
    smaller generations are padded to shapes the process has already compiled."""

    eta: int = 2
    rungs: int = 3
    protected: tuple[int, ...] = ()
    sizes: tuple[int, ...] = ()

    def __post_init__(self):
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"halving eta must be an integer >= 2, got {self.eta!r}")
        if isinstance(self.rungs, bool) or not isinstance(self.rungs, int) or self.rungs < 1:
            raise ValueError(f"halving rungs must be a positive integer, got {self.rungs!r}")

    def rung_updates(self, n_updates: int) -> list[int]:
        """The update after which each rung ends (the last is ``n_updates``)."""
        ends = {max(1, round(n_updates / self.eta ** (self.rungs - 1 - r))) for r in range(self.rungs)}
        return sorted(ends)

    def keep(self, n_open: int) -> int:
        return max(1, n_open // self.eta)


def halving_sizes(n_candidates: int, n_protected: int, n_seeds: int, halving: Halving, n_updates: int) -> list[int]:
    """Members per stage of a generation of ``n_candidates`` open and ``n_protected`` candidates."""
    sizes, open_ = [], n_candidates
    for _ in halving.rung_updates(n_updates):
        sizes.append((open_ + n_protected) * n_seeds)
        open_ = halving.keep(open_) if open_ else 0
    return sizes


def _stage_size(n: int, hint: int | None, d: int) -> int:
    """Members to compile for ``n`` real ones: the run's size for this stage when that is close
    (at most twice the members, or two more per device), else ``n`` rounded up to the devices."""
    if hint and n <= hint <= max(2 * n, n + 2 * d):
        n = hint
    return n + (-n) % d


def split_members(out: dict, n: int) -> list[dict]:
    """Stacked outputs (leading member axis) -> one dict per member."""
    return [jax.tree.map(lambda x, m=m: np.asarray(x)[m], out) for m in range(n)]


RungCallback = Callable[[int, int, int, dict, dict], None]  # (rung, update, of, kept: cand->fit, stopped: cand->fit)


def train_halving(task: Task, config: PPOConfig, branches: Sequence[Callable], member_branch: Sequence[int],
                  member_seed: Sequence[int], halving: Halving, devices: Sequence[Any] | None = None,
                  on_chunk: ChunkCallback | None = None,
                  on_rung: RungCallback | None = None) -> tuple[list[dict], dict]:
    """Train with successive halving; returns one output dict per member (its own curve length, the
    evaluation where it stopped, ``env_steps`` trained and the ``rung`` reached of ``rungs``) and timing.

    After each rung the surviving members' state is moved into a smaller population (a trainer
    compiled for that size), so stopped candidates cost nothing further."""
    if config.program != "split":
        raise ValueError("budget=halving needs train.program=split")
    if len(member_branch) == 0:
        raise ValueError("empty population")
    h = _HalvingRun(task, config, branches, member_branch, member_seed, halving, devices, on_chunk)
    t_start = time.perf_counter()
    u = 0
    for r, end in enumerate(h.ends):
        out = h.train_stage(r, u, end)
        u = end
        last = r + 1 == len(h.ends)
        keep_rows = np.arange(len(h.alive)) if last else h.survivors(r, end, out, on_rung)
        h.record_stopped(out, keep_rows, r, end, last)
        if not last:
            h.shrink(keep_rows, r + 1)
    total = time.perf_counter() - t_start
    return h.results, {"compile_s": h.compile_s, "reward_compile_s": h.reward_compile, "train_s": total - h.compile_s,
                       "updates": h.n_updates, "rung_updates": h.ends, "stage_members": h.stage_sizes,
                       "devices": h.d, "members": h.n, "program": "split", "budget": "halving",
                       "env_steps": int(sum(r["env_steps"] for r in h.results))}


class _HalvingRun:
    """The state of one successive-halving run: the members still training (``alive``), each member's
    host metrics so far, the finished members' outputs, and the trainer's state between stages."""

    def __init__(self, task, config, branches, member_branch, member_seed, halving, devices, on_chunk):
        self.task, self.config, self.branches, self.halving, self.on_chunk = task, config, branches, halving, on_chunk
        devices = list(devices if devices is not None else jax.devices())
        self.n = len(member_branch)
        self.member_branch = np.asarray(member_branch, np.int32)
        self.member_seed = np.asarray(member_seed, np.uint32)
        self.d = max(1, min(len(devices), self.n))
        self.devices = devices[:self.d]
        self.n_updates = config.num_updates
        self.per_update = config.num_envs * config.num_steps
        self.ends = halving.rung_updates(self.n_updates)
        self.protected = set(halving.protected)
        self.results: list[dict | None] = [None] * self.n
        self.parts: list[list[dict]] = [[] for _ in range(self.n)]  # per member: host metrics per update
        self.alive = np.arange(self.n)
        self.compile_s = self.reward_compile = 0.0
        self.run = None
        self.stage_sizes: list[int] = []

    def _size(self, n_alive: int, r: int) -> int:
        return _stage_size(n_alive, self.halving.sizes[r] if r < len(self.halving.sizes) else None, self.d)

    def train_stage(self, r: int, start: int, end: int) -> dict:
        """Updates ``start`` to ``end`` for the members alive, in a trainer compiled for this stage's size."""
        size = self._size(len(self.alive), r)
        rows = np.concatenate([self.alive, np.full(size - len(self.alive), self.alive[0])]).astype(np.int64)
        trainer = Trainer.get(self.task, self.config, size, tuple(self.devices))
        before = trainer.compile_s
        score = trainer.scorer(self.branches, self.member_branch[rows])
        self.run = trainer.start(self.member_seed[rows]) if self.run is None else trainer.adopt(*self.run)
        self.stage_sizes.append(size)
        trainer.advance(self.run, score, start, end, self._show(self.alive.copy(), self.run, start))
        for i, m in enumerate(self.alive):
            self.parts[m].extend({k: np.asarray(v)[i] for k, v in h.items()} for h in self.run.metrics)
        out = trainer.finish(self.run, score)
        self.compile_s += trainer.compile_s - before + score.compile_s
        self.reward_compile += score.compile_s
        return out

    def _show(self, live, run, stage_start: int):
        """The chunk callback: every member's metrics so far (stopped members' as they stopped)."""
        if self.on_chunk is None:
            return lambda done: None

        def show(done: int) -> None:
            now = _stack(run.metrics)
            full = {}
            for k, v in now.items():
                arr = np.zeros((self.n, done) + v.shape[2:], v.dtype)
                for m in range(self.n):
                    got = _stack_updates(self.parts[m])[k] if self.parts[m] else np.zeros((0,) + v.shape[2:], v.dtype)
                    arr[m, :len(got)] = got
                arr[live, stage_start:done] = v[:len(live)]
                full[k] = arr
            self.on_chunk(done, self.n_updates, full)

        return show

    def survivors(self, r: int, end: int, out: dict, on_rung: RungCallback | None) -> np.ndarray:
        """Rows (of ``alive``) that train on: the best 1/eta of the open candidates and the protected."""
        fit = _member_fitness(out)
        alive_branch = self.member_branch[self.alive]
        branch_fit = {b: float(fit[:len(self.alive)][alive_branch == b].mean())
                      for b in dict.fromkeys(alive_branch.tolist())}
        open_ = sorted((b for b in branch_fit if b not in self.protected), key=lambda b: -branch_fit[b])
        kept = set(open_[:self.halving.keep(len(open_))]) | (self.protected & set(branch_fit))
        if on_rung is not None:
            on_rung(r + 1, end, self.n_updates, {b: branch_fit[b] for b in branch_fit if b in kept},
                    {b: branch_fit[b] for b in branch_fit if b not in kept})
        return np.asarray([i for i, m in enumerate(self.alive) if self.member_branch[m] in kept], np.int64)

    def record_stopped(self, out: dict, keep_rows: np.ndarray, r: int, end: int, last: bool) -> None:
        """The output of every member that stops here (all of them after the last rung)."""
        keep = set(keep_rows.tolist())
        for i, m in enumerate(self.alive):
            if last or i not in keep:
                one = jax.tree.map(lambda x, i=i: np.asarray(x)[i], {k: v for k, v in out.items() if k != "curve"})
                one["curve"] = _stack_updates(self.parts[m])
                one["nonfinite_rewards"] = int(one["curve"]["nonfinite"].sum())
                one.update(env_steps=end * self.per_update, rung=r + 1, rungs=len(self.ends))
                self.results[m] = one

    def shrink(self, keep_rows: np.ndarray, next_r: int) -> None:
        """The survivors' trainer state, padded to the next stage's size."""
        host = jax.device_get((self.run.carry, self.run.tr))
        take = np.concatenate([keep_rows, np.full(self._size(len(keep_rows), next_r) - len(keep_rows),
                                                  keep_rows[0])]).astype(np.int64)
        carry, tr = jax.tree.map(lambda x: np.asarray(x)[take], host)
        self.run = (carry, tr, self.run.active[take], self.run.stopped_at[take])
        self.alive = self.alive[keep_rows]


def _stack_updates(metrics: list[dict]) -> dict:
    """One member's per-update metrics -> one array per key with the update axis first."""
    return {k: np.stack([np.asarray(m[k]) for m in metrics], 0) for k in metrics[0]}


def _member_fitness(out: dict) -> np.ndarray:
    """Each member's evaluation fitness (mean over its episodes); -inf where it is not usable."""
    fit = np.asarray(out["eval"]["fitness"], np.float64).reshape(len(out["params_finite"]), -1).mean(1)
    bad = ~np.isfinite(fit) | ~np.asarray(out["params_finite"], bool) | (np.asarray(out["stopped_at_update"]) > 0)
    return np.where(bad, -np.inf, fit)
