"""PPO for one member as pure functions, purejaxrl-style: state in, state out.

``PPO`` holds the pieces (init, rollout, learn, evaluate), none of which depends on candidate code;
rollouts store the schema views of each transition (the true next state, before any auto-reset) and
rewards are computed on them afterwards. Every reward branch returns the same pytree,
``(total[], components[MAX_COMPONENTS])``. ``make_train`` composes the pieces with the rewards inside
one program (``lax.switch`` on a member's index); ``train.population`` composes them into a
trainer compiled once per task and settings, with the rewards as a small program of their own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from rewardsmith.tasks.autoreset import reset_where_done
from rewardsmith.tasks.base import Task

# A reward branch: (state, action, next_state) -> (total f32[], components f32[MAX_COMPONENTS]).
RewardBranch = Callable[[Any, jax.Array, Any], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 16
    num_steps: int = 64
    total_timesteps: int = 100_000
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 2.5e-3
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    normalize_obs: bool = True
    normalize_reward: bool = True
    num_eval_envs: int = 16
    init_log_std: float = 0.0  # continuous actions: initial log standard deviation of the Gaussian policy
    clip_value_loss: bool = True  # PPO's clipped value loss (False: plain squared error)
    # a time-limit truncation is not a failure: bootstrap the return with the value of the state reached
    bootstrap_truncation: bool = True
    # how a generation's training is built (see train.population): "split" compiles the trainer once
    # per task and settings and the rewards per generation; "fused" compiles everything per generation
    program: str = "split"
    chunk_updates: int = 0  # updates between looks at the members (0: about a tenth of the training)

    def __post_init__(self) -> None:
        if self.program not in ("split", "fused"):
            raise ValueError(f"program must be split or fused, got {self.program!r}")
        for k in ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches", "num_eval_envs"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be a positive integer, got {getattr(self, k)!r}")
        if self.chunk_updates < 0:
            raise ValueError(f"chunk_updates must be 0 (automatic) or positive, got {self.chunk_updates!r}")

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))

    @property
    def env_steps(self) -> int:
        """Environment steps actually trained (total_timesteps rounded down to whole rollouts)."""
        return self.num_updates * self.num_envs * self.num_steps

    @classmethod
    def from_dict(cls, d: dict) -> "PPOConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PPO settings: {sorted(unknown)}; known: {sorted(names)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(int(h) for h in d["hidden"])
        for k in ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches",
                  "num_eval_envs", "chunk_updates"):
            if k in d:
                d[k] = int(d[k])
        return cls(**d)


# --- networks -----------------------------------------------------------------------------------

def _mlp_init(key, sizes: Sequence[int], out_scale: float):
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        scale = out_scale if i == len(sizes) - 2 else math.sqrt(2.0)
        w = jax.nn.initializers.orthogonal(scale)(k, (n_in, n_out), jnp.float32)
        params.append((w, jnp.zeros((n_out,), jnp.float32)))
    return params


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return x @ w + b


class _RunningStats:
    """Welford mean/variance over batches (obs and return normalisation)."""

    @staticmethod
    def init(shape):
        return {"mean": jnp.zeros(shape), "var": jnp.ones(shape), "count": jnp.float32(1e-4)}

    @staticmethod
    def update(stats, batch):
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta = b_mean - stats["mean"]
        tot = stats["count"] + b_count
        mean = stats["mean"] + delta * b_count / tot
        m2 = stats["var"] * stats["count"] + b_var * b_count + delta**2 * stats["count"] * b_count / tot
        return {"mean": mean, "var": m2 / tot, "count": tot}


class Transitions(NamedTuple):
    """One rollout of one member, leading axes [num_steps, num_envs]: everything PPO and a reward need.

    ``state``/``next_state`` are the schema views a reward reads; ``next_state`` is the true next
    state, taken before any auto-reset."""

    state: Any
    env_action: jax.Array   # what the environment (and the reward) received
    next_state: Any
    obs: jax.Array          # normalised observation the policy saw
    raw_obs: jax.Array
    action: jax.Array       # the policy's own sample (pre-clipping), for the log-probability
    logp: jax.Array
    value: jax.Array
    done: jax.Array
    v_trunc: jax.Array      # value of a state a time limit cut short (0 elsewhere), to bootstrap from
    env_reward: jax.Array
    fin_fit: jax.Array      # task fitness of episodes that ended at this step (0 elsewhere)
    fin_len: jax.Array


class Carry(NamedTuple):
    """One member's training state between updates."""

    params: Any
    opt: Any
    obs: jax.Array
    env_state: Any
    obs_stats: dict
    ret_stats: dict
    ret_acc: jax.Array
    ep_fit: jax.Array
    ep_len: jax.Array
    rng: jax.Array


class Batch(NamedTuple):
    """A PPO update's training data, flattened to [batch] (or one minibatch of it)."""

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    adv: jax.Array
    target: jax.Array


class EvalCarry(NamedTuple):
    """The deterministic evaluation's state from one step to the next, leading axis [num_eval_envs]."""

    obs: jax.Array
    env_state: Any
    alive: jax.Array
    fitness: jax.Array
    length: jax.Array
    terminated: jax.Array
    rng: jax.Array
    field_min: jax.Array   # per schema field: the smallest, largest and summed magnitude seen
    field_max: jax.Array
    field_sum: jax.Array
    action_abs: jax.Array  # summed mean |action| per step


class RewardOut(NamedTuple):
    """A reward on a batch of transitions: non-finite totals are zeroed and flagged in ``bad``."""

    total: jax.Array
    components: jax.Array
    bad: jax.Array


def clean_reward(total, components) -> RewardOut:
    bad = ~jnp.isfinite(total) | ~jnp.all(jnp.isfinite(components), axis=-1)
    return RewardOut(jnp.where(bad, 0.0, total), jnp.nan_to_num(components, nan=0.0, posinf=0.0, neginf=0.0), bad)


class EvalRollout(NamedTuple):
    """The deterministic evaluation episodes, leading axes [max_episode_steps, num_eval_envs] for the
    per-step fields, and the per-env totals that need no reward."""

    state: Any
    env_action: jax.Array
    next_state: Any
    live: jax.Array
    trace: dict
    fitness_step: jax.Array  # the task's fitness of each step
    fitness: jax.Array
    length: jax.Array
    terminated: jax.Array
    field_min: jax.Array
    field_max: jax.Array
    field_mean: jax.Array
    action_abs_mean: jax.Array


class PPO:
    """The pieces of PPO for one task and settings, as pure single-member functions (state in, state
    out): ``init``, ``rollout`` (no reward inside), ``learn`` (given the rollout's rewards),
    ``evaluate`` (deterministic episodes, no reward inside) and ``eval_stats`` (given their rewards).

    None of them depends on candidate code, so a trainer built from them is compiled once per task,
    settings and population shape; rewards are a separate, small program (``train.population``).
    ``make_train`` composes the same pieces with the rewards inside one program."""

    def __init__(self, config: PPOConfig, task: Task):
        cfg = self.cfg = config
        self.task = task
        self.env = env = task.make_env()
        self.schema = task.schema
        self.act = task.schema.action
        self.discrete = self.act.kind == "discrete"
        self.n_out = self.act.size
        self.num_updates = cfg.num_updates
        self.batch = cfg.num_envs * cfg.num_steps
        if self.batch % cfg.num_minibatches:
            raise ValueError(f"num_envs*num_steps={self.batch} is not divisible by num_minibatches={cfg.num_minibatches}")
        self.mb_size = self.batch // cfg.num_minibatches
        self.scalar_fields = [f.name for f in task.schema.fields]
        self.skeleton = task.skeleton(env)  # (env_state -> body positions [B, 3], parents) or None
        self.obs_size = env.obs_size
        # an episode's fitness: the sum of its steps' values, or their maximum (task.fitness_reduce)
        if task.fitness_reduce == "max":
            self.fit_init, self.fit_combine = -jnp.inf, jnp.maximum
        else:
            self.fit_init, self.fit_combine = 0.0, jnp.add
        lr_fn = (optax.linear_schedule(cfg.lr, 0.0, self.num_updates * cfg.update_epochs * cfg.num_minibatches)
                 if cfg.anneal_lr else cfg.lr)
        self.tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr_fn, eps=1e-5))

    # -- small helpers --------------------------------------------------------------------------------
    def view(self, env_state):
        return self.schema.make_state(self.task.hooks.state_view(env_state))

    def critic(self, params, obs_n):
        return jax.vmap(lambda o: _mlp(params["critic"], o)[0])(obs_n)

    def policy(self, params, obs_n, key, deterministic=False):
        out = _mlp(params["actor"], obs_n)
        if self.discrete:
            a = jnp.argmax(out) if deterministic else jax.random.categorical(key, out)
            logp = jax.nn.log_softmax(out)[a]
            return a.astype(jnp.int32), logp, a.astype(jnp.int32)
        std = jnp.exp(params["log_std"])
        raw = out if deterministic else out + std * jax.random.normal(key, out.shape)
        logp = _gauss_logp(raw, out, params["log_std"])
        env_a = jnp.clip(raw, self.act.low, self.act.high).reshape(self.act.shape)
        return raw, logp, env_a

    def normalize(self, obs, stats):
        if not self.cfg.normalize_obs:
            return obs
        return jnp.clip((obs - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-8), -10.0, 10.0)

    def field_magnitudes(self, state):
        return jnp.stack([jnp.linalg.norm(jnp.ravel(getattr(state, n))) if getattr(state, n).ndim
                          else getattr(state, n) for n in self.scalar_fields])

    # -- the programs' bodies -------------------------------------------------------------------------
    def init(self, rng) -> Carry:
        cfg, env = self.cfg, self.env
        rng, k_a, k_c, k_env = jax.random.split(rng, 4)
        params = {
            "actor": _mlp_init(k_a, (self.obs_size, *cfg.hidden, self.n_out), 0.01),
            "critic": _mlp_init(k_c, (self.obs_size, *cfg.hidden, 1), 1.0),
        }
        if not self.discrete:
            params["log_std"] = jnp.full((self.n_out,), cfg.init_log_std, jnp.float32)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, cfg.num_envs))
        return Carry(params=params, opt=self.tx.init(params), obs=obs, env_state=env_state,
                     obs_stats=_RunningStats.init((self.obs_size,)), ret_stats=_RunningStats.init(()),
                     ret_acc=jnp.zeros(cfg.num_envs), ep_fit=jnp.full(cfg.num_envs, self.fit_init),
                     ep_len=jnp.zeros(cfg.num_envs), rng=rng)

    def rollout(self, c: Carry) -> tuple[Carry, Transitions]:
        cfg, env, n = self.cfg, self.env, self.cfg.num_envs

        def env_step(c: Carry, _):
            rng, k_act, k_step, k_reset = jax.random.split(c.rng, 4)
            obs_n = self.normalize(c.obs, c.obs_stats)
            raw, logp, env_a = jax.vmap(self.policy, in_axes=(None, 0, 0))(c.params, obs_n, jax.random.split(k_act, n))
            value = self.critic(c.params, obs_n)
            obs2, es2, env_r, term, trunc = jax.vmap(env.step)(jax.random.split(k_step, n), c.env_state, env_a)
            s, ns = jax.vmap(self.view)(c.env_state), jax.vmap(self.view)(es2)
            fit = jax.vmap(self.task.hooks.fitness_step)(s, env_a, ns, env_r, term)
            done = term | trunc
            v_trunc = jnp.zeros(n)
            if cfg.bootstrap_truncation:
                v_last = self.critic(c.params, self.normalize(obs2, c.obs_stats))
                v_trunc = jnp.where(trunc & ~term, v_last, 0.0)
            obs_r, es_next = reset_where_done(env, k_reset, done, es2)  # after the next state was viewed
            obs_next = jnp.where(done[:, None], obs_r, obs2)
            ep_fit, ep_len = self.fit_combine(c.ep_fit, fit), c.ep_len + 1
            tr = Transitions(state=s, env_action=env_a, next_state=ns, obs=obs_n, raw_obs=c.obs, action=raw,
                             logp=logp, value=value, done=done, v_trunc=v_trunc, env_reward=env_r,
                             fin_fit=jnp.where(done, ep_fit, 0.0), fin_len=jnp.where(done, ep_len, 0.0))
            c = c._replace(rng=rng, obs=obs_next, env_state=es_next, ep_fit=jnp.where(done, self.fit_init, ep_fit),
                           ep_len=jnp.where(done, 0.0, ep_len))
            return c, tr

        return jax.lax.scan(env_step, c, None, cfg.num_steps)

    def learn(self, c: Carry, tr: Transitions, rew: RewardOut) -> tuple[Carry, dict]:
        """One PPO update from a rollout and its (cleaned) rewards."""
        cfg, batch = self.cfg, self.batch

        def discounted(acc, x):
            r, done = x
            acc = acc * cfg.gamma + r
            return jnp.where(done, 0.0, acc), acc

        ret_acc, ret_seq = jax.lax.scan(discounted, c.ret_acc, (rew.total, tr.done))
        obs_stats = _RunningStats.update(c.obs_stats, tr.raw_obs.reshape(-1, self.obs_size))
        ret_stats = _RunningStats.update(c.ret_stats, ret_seq.reshape(-1))
        r = rew.total
        if cfg.normalize_reward:
            r = r / jnp.sqrt(ret_stats["var"] + 1e-8)
        r = r + cfg.gamma * tr.v_trunc  # the critic already speaks in normalised returns
        last_v = self.critic(c.params, self.normalize(c.obs, c.obs_stats))

        def gae(carry, t):
            adv, next_v = carry
            r_t, done_t, v_t = t
            delta = r_t + cfg.gamma * next_v * (1 - done_t) - v_t
            adv = delta + cfg.gamma * cfg.gae_lambda * (1 - done_t) * adv
            return (adv, v_t), adv

        _, adv = jax.lax.scan(gae, (jnp.zeros(cfg.num_envs), last_v),
                              (r, tr.done.astype(jnp.float32), tr.value), reverse=True)
        data = Batch(obs=tr.obs, action=tr.action, logp=tr.logp, value=tr.value, adv=adv, target=adv + tr.value)
        data = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), data)

        def epoch(carry, key):
            perm = jax.random.permutation(key, batch)
            mbs = jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, self.mb_size) + x.shape[1:]), data)

            def mb_step(carry, mb):
                p, o = carry
                g = jax.grad(self.loss)(p, mb)
                upd, o = self.tx.update(g, o, p)
                return (optax.apply_updates(p, upd), o), None

            return jax.lax.scan(mb_step, carry, mbs)[0], None

        rng, k = jax.random.split(c.rng)
        (p, o), _ = jax.lax.scan(epoch, (c.params, c.opt), jax.random.split(k, cfg.update_epochs))
        metrics = {
            "components": rew.components.mean((0, 1)),
            "reward": rew.total.mean(),
            "env_reward": tr.env_reward.mean(),
            "fitness_sum": tr.fin_fit.sum(),
            "length_sum": tr.fin_len.sum(),
            "episodes": tr.done.sum(),
            "nonfinite": rew.bad.sum(),
        }
        return c._replace(params=p, opt=o, rng=rng, obs_stats=obs_stats, ret_stats=ret_stats, ret_acc=ret_acc), metrics

    def loss(self, p, mb):
        cfg = self.cfg
        if self.discrete:
            logits = jax.vmap(lambda o: _mlp(p["actor"], o))(mb.obs)
            logp_all = jax.nn.log_softmax(logits)
            logp = jnp.take_along_axis(logp_all, mb.action[:, None], 1)[:, 0]
            entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, -1).mean()
        else:
            mean = jax.vmap(lambda o: _mlp(p["actor"], o))(mb.obs)
            logp = jax.vmap(lambda a, m: _gauss_logp(a, m, p["log_std"]))(mb.action, mean)
            entropy = jnp.sum(p["log_std"] + 0.5 * math.log(2 * math.pi * math.e))
        v = self.critic(p, mb.obs)
        if cfg.clip_value_loss:
            v_clip = mb.value + jnp.clip(v - mb.value, -cfg.clip_eps, cfg.clip_eps)
            v_loss = 0.5 * jnp.maximum((v - mb.target) ** 2, (v_clip - mb.target) ** 2).mean()
        else:
            v_loss = 0.5 * ((v - mb.target) ** 2).mean()
        a = (mb.adv - mb.adv.mean()) / (mb.adv.std() + 1e-8)
        ratio = jnp.exp(logp - mb.logp)
        pg = -jnp.minimum(ratio * a, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * a).mean()
        return pg + cfg.vf_coef * v_loss - cfg.ent_coef * entropy

    def params_finite(self, c: Carry) -> jax.Array:
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(c.params)]))

    def evaluate(self, c: Carry) -> EvalRollout:
        """Deterministic policy, one episode per eval env, no resets."""
        n, env = self.cfg.num_eval_envs, self.env
        rng = jax.random.fold_in(c.rng, 7)
        obs, es = jax.vmap(env.reset)(jax.random.split(rng, n))
        nf = len(self.scalar_fields)
        init = EvalCarry(obs=obs, env_state=es, alive=jnp.ones(n, bool), fitness=jnp.full(n, self.fit_init),
                         length=jnp.zeros(n), terminated=jnp.zeros(n, bool), rng=rng,
                         field_min=jnp.full((n, nf), jnp.inf), field_max=jnp.full((n, nf), -jnp.inf),
                         field_sum=jnp.zeros((n, nf)), action_abs=jnp.zeros(n))

        def step(e: EvalCarry, _):
            rng, k = jax.random.split(e.rng)
            obs_n = self.normalize(e.obs, c.obs_stats)
            _, _, env_a = jax.vmap(lambda o: self.policy(c.params, o, None, True))(obs_n)
            obs2, es2, env_r, term, trunc = jax.vmap(env.step)(jax.random.split(k, n), e.env_state, env_a)
            s, ns = jax.vmap(self.view)(e.env_state), jax.vmap(self.view)(es2)
            fit = jax.vmap(self.task.hooks.fitness_step)(s, env_a, ns, env_r, term)
            live = e.alive.astype(jnp.float32)
            mags = jax.vmap(self.field_magnitudes)(ns)
            al = e.alive[:, None]
            out = EvalCarry(
                obs=obs2, env_state=es2, rng=rng,
                fitness=jnp.where(e.alive, self.fit_combine(e.fitness, fit), e.fitness), length=e.length + live,
                terminated=e.terminated | (e.alive & term),
                alive=e.alive & ~(term | trunc),
                field_min=jnp.where(al, jnp.minimum(e.field_min, mags), e.field_min),
                field_max=jnp.where(al, jnp.maximum(e.field_max, mags), e.field_max),
                field_sum=e.field_sum + live[:, None] * mags,
                action_abs=e.action_abs + live * jnp.abs(jnp.asarray(env_a, jnp.float32)).reshape(n, -1).mean(-1),
            )
            # the first evaluation episode, step by step: what the rollout viewer and the feedback
            # session show (schema fields and body positions when the task has them; rewards are added
            # by eval_stats)
            trace = {"alive": e.alive[0], "fields": mags[0]}
            if self.skeleton is not None:
                trace["bodies"] = self.skeleton[0](jax.tree.map(lambda x: x[0], es2))
            return out, (s, env_a, ns, live, trace, fit)

        e, (s, a, ns, live, trace, fit) = jax.lax.scan(step, init, None, env.max_episode_steps)
        if self.skeleton is not None:
            trace["first_bodies"] = self.skeleton[0](jax.tree.map(lambda x: x[0], init.env_state))
        steps = jnp.maximum(e.length.sum(), 1.0)
        return EvalRollout(state=s, env_action=a, next_state=ns, live=live, trace=trace, fitness_step=fit, fitness=e.fitness,
                           length=e.length, terminated=e.terminated, field_min=e.field_min.min(0),
                           field_max=e.field_max.max(0), field_mean=e.field_sum.sum(0) / steps,
                           action_abs_mean=e.action_abs.sum() / steps)

    @staticmethod
    def eval_stats(ev: EvalRollout, rew: RewardOut) -> dict:
        """The evaluation record: reward-free totals from ``evaluate`` plus the rewards on its steps."""
        steps = jnp.maximum(ev.length.sum(), 1.0)
        trace = {**ev.trace, "reward": rew.total[:, 0], "components": rew.components[:, 0]}
        return {
            "trace": trace, "sample": _sample(ev), "fitness": ev.fitness, "length": ev.length, "terminated": ev.terminated,
            "components": (ev.live[..., None] * rew.components).sum((0, 1)) / steps,
            "reward": (ev.live * rew.total).sum() / steps,
            "field_min": ev.field_min, "field_max": ev.field_max, "field_mean": ev.field_mean,
            "action_abs_mean": ev.action_abs_mean,
        }


# the evaluation episodes kept for judging later rewards on them (records.Trajectories): the first
# few episodes, every stride-th step so that at most SAMPLE_STEPS remain
SAMPLE_EPISODES = 4
SAMPLE_STEPS = 128


def _sample(ev: EvalRollout) -> dict:
    steps, episodes = ev.live.shape[0], min(ev.live.shape[1], SAMPLE_EPISODES)
    stride = max(1, -(-steps // SAMPLE_STEPS))

    def pick(x):
        return x[::stride, :episodes]
    return {"state": jax.tree.map(pick, ev.state), "next_state": jax.tree.map(pick, ev.next_state),
            "action": pick(ev.env_action), "live": pick(ev.live), "fitness_step": pick(ev.fitness_step),
            "fitness": ev.fitness[:episodes], "stride": jnp.int32(stride)}


def apply_reward(fn: RewardBranch, state, action, next_state) -> RewardOut:
    """``fn`` on transitions with leading axes [T, N]."""
    total, comps = jax.vmap(jax.vmap(fn))(state, action, next_state)
    return clean_reward(total, comps)


def make_train(config: PPOConfig, task: Task, reward_fns: Sequence[RewardBranch]):
    """Build ``train(rng, reward_index=0) -> outputs``: the whole training of one member, rewards
    inside (chosen by ``lax.switch`` on the index), as one program. ``train.population`` builds the
    same training from ``PPO``'s pieces with the rewards as a separate program instead."""
    if not reward_fns:
        raise ValueError("make_train needs at least one reward function")
    ppo = PPO(config, task)

    def train(rng, reward_index=0):
        idx = jnp.asarray(reward_index, jnp.int32)

        def reward(s, a, ns):
            if len(reward_fns) == 1:
                return reward_fns[0](s, a, ns)
            return jax.lax.switch(idx, list(reward_fns), s, a, ns)

        def update(c, _):
            c, tr = ppo.rollout(c)
            return ppo.learn(c, tr, apply_reward(reward, tr.state, tr.env_action, tr.next_state))

        carry, curve = jax.lax.scan(update, ppo.init(rng), None, ppo.num_updates)
        ev = ppo.evaluate(carry)
        evaluation = ppo.eval_stats(ev, apply_reward(reward, ev.state, ev.env_action, ev.next_state))
        return {"curve": curve, "eval": evaluation, "params_finite": ppo.params_finite(carry),
                "nonfinite_rewards": curve["nonfinite"].sum()}

    return train


def _gauss_logp(x, mean, log_std):
    return jnp.sum(-0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi))
