"""PPO as one pure function: ``make_train(config, task, reward_fns)`` returns ``train(rng, idx)``.

``train`` is jit- and vmap-able: a whole generation is ``vmap(train)`` over (rng, reward index),
with the reward chosen by ``jax.lax.switch`` on the member's index. Every reward branch returns the
same pytree, ``(total[], components[MAX_COMPONENTS])``, so the switch is well-typed. The reward is
computed on the true next state, before the environment is reset.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from rewardsmith.tasks.base import Task

MAX_COMPONENTS = 8

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
                  "num_eval_envs"):
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


def make_train(config: PPOConfig, task: Task, reward_fns: Sequence[RewardBranch]):
    """Build ``train(rng, reward_index=0) -> outputs`` for ``task`` with rewards ``reward_fns``."""
    if not reward_fns:
        raise ValueError("make_train needs at least one reward function")
    cfg = config
    env = task.make_env()
    schema = task.schema
    act = schema.action
    discrete = act.kind == "discrete"
    n_out = act.size
    num_updates = cfg.num_updates
    batch = cfg.num_envs * cfg.num_steps
    if batch % cfg.num_minibatches:
        raise ValueError(f"num_envs*num_steps={batch} is not divisible by num_minibatches={cfg.num_minibatches}")
    mb_size = batch // cfg.num_minibatches
    scalar_fields = [f.name for f in schema.fields]
    skeleton = task.skeleton(env)  # (env_state -> body positions [B, 3], parents) or None

    def view(env_state):
        return schema.make_state(task.hooks.state_view(env_state))

    def reward(idx, s, a, ns):
        if len(reward_fns) == 1:
            return reward_fns[0](s, a, ns)
        return jax.lax.switch(idx, list(reward_fns), s, a, ns)

    def policy(params, obs_n, key, deterministic=False):
        out = _mlp(params["actor"], obs_n)
        if discrete:
            a = jnp.argmax(out) if deterministic else jax.random.categorical(key, out)
            logp = jax.nn.log_softmax(out)[a]
            return a.astype(jnp.int32), logp, a.astype(jnp.int32)
        std = jnp.exp(params["log_std"])
        raw = out if deterministic else out + std * jax.random.normal(key, out.shape)
        logp = _gauss_logp(raw, out, params["log_std"])
        env_a = jnp.clip(raw, act.low, act.high).reshape(act.shape)
        return raw, logp, env_a

    def normalize(obs, stats):
        if not cfg.normalize_obs:
            return obs
        return jnp.clip((obs - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-8), -10.0, 10.0)

    def field_magnitudes(state):
        return jnp.stack([jnp.linalg.norm(jnp.ravel(getattr(state, n))) if getattr(state, n).ndim
                          else getattr(state, n) for n in scalar_fields])

    def train(rng, reward_index=0):
        idx = jnp.asarray(reward_index, jnp.int32)
        rng, k_a, k_c, k_env = jax.random.split(rng, 4)
        obs_size = env.obs_size
        params = {
            "actor": _mlp_init(k_a, (obs_size, *cfg.hidden, n_out), 0.01),
            "critic": _mlp_init(k_c, (obs_size, *cfg.hidden, 1), 1.0),
        }
        if not discrete:
            params["log_std"] = jnp.full((n_out,), cfg.init_log_std, jnp.float32)
        lr_fn = (optax.linear_schedule(cfg.lr, 0.0, num_updates * cfg.update_epochs * cfg.num_minibatches)
                 if cfg.anneal_lr else cfg.lr)
        tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr_fn, eps=1e-5))
        opt_state = tx.init(params)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, cfg.num_envs))
        carry = {
            "params": params, "opt": opt_state, "obs": obs, "env_state": env_state,
            "obs_stats": _RunningStats.init((obs_size,)), "ret_stats": _RunningStats.init(()),
            "ret_acc": jnp.zeros(cfg.num_envs), "ep_fit": jnp.zeros(cfg.num_envs),
            "ep_len": jnp.zeros(cfg.num_envs), "rng": rng,
        }

        def env_step(c, _):
            rng, k_act, k_step, k_reset = jax.random.split(c["rng"], 4)
            obs_n = normalize(c["obs"], c["obs_stats"])
            raw, logp, env_a = jax.vmap(policy, in_axes=(None, 0, 0))(
                c["params"], obs_n, jax.random.split(k_act, cfg.num_envs))
            value = jax.vmap(lambda o: _mlp(c["params"]["critic"], o)[0])(obs_n)
            obs2, es2, env_r, term, trunc = jax.vmap(env.step)(
                jax.random.split(k_step, cfg.num_envs), c["env_state"], env_a)
            s, ns = jax.vmap(view)(c["env_state"]), jax.vmap(view)(es2)
            r, comps = jax.vmap(lambda a, b, d: reward(idx, a, b, d))(s, env_a, ns)
            bad = ~jnp.isfinite(r) | ~jnp.all(jnp.isfinite(comps), axis=-1)
            r = jnp.where(bad, 0.0, r)
            comps = jnp.nan_to_num(comps, nan=0.0, posinf=0.0, neginf=0.0)
            fit = jax.vmap(task.hooks.fitness_step)(s, env_a, ns, env_r, term)
            done = term | trunc
            # the value of the state a time limit cut short, to bootstrap from (0 where not truncated)
            v_trunc = jnp.zeros(cfg.num_envs)
            if cfg.bootstrap_truncation:
                v_last = jax.vmap(lambda o: _mlp(c["params"]["critic"], o)[0])(normalize(obs2, c["obs_stats"]))
                v_trunc = jnp.where(trunc & ~term, v_last, 0.0)
            # auto-reset after the reward has seen the true next state
            obs_r, es_r = jax.vmap(env.reset)(jax.random.split(k_reset, cfg.num_envs))
            es_next = jax.tree.map(lambda a, b: jax.vmap(jnp.where)(done, a, b), es_r, es2)
            obs_next = jnp.where(done[:, None], obs_r, obs2)
            ep_fit = c["ep_fit"] + fit
            ep_len = c["ep_len"] + 1
            ret_acc = c["ret_acc"] * cfg.gamma + r
            out = {
                "obs": obs_n, "raw_obs": c["obs"], "action": raw, "logp": logp, "value": value,
                "reward": r, "done": done, "v_trunc": v_trunc, "comps": comps, "env_reward": env_r, "bad": bad,
                "ret_acc": ret_acc, "fin_fit": jnp.where(done, ep_fit, 0.0),
                "fin_len": jnp.where(done, ep_len, 0.0),
            }
            c = {**c, "rng": rng, "obs": obs_next, "env_state": es_next,
                 "ep_fit": jnp.where(done, 0.0, ep_fit), "ep_len": jnp.where(done, 0.0, ep_len),
                 "ret_acc": jnp.where(done, 0.0, ret_acc)}
            return c, out

        def update(c, _):
            c, tr = jax.lax.scan(env_step, c, None, cfg.num_steps)
            obs_stats = _RunningStats.update(c["obs_stats"], tr["raw_obs"].reshape(-1, obs_size))
            ret_stats = _RunningStats.update(c["ret_stats"], tr["ret_acc"].reshape(-1))
            r = tr["reward"]
            if cfg.normalize_reward:
                r = r / jnp.sqrt(ret_stats["var"] + 1e-8)
            r = r + cfg.gamma * tr["v_trunc"]  # the critic already speaks in normalised returns
            last_v = jax.vmap(lambda o: _mlp(c["params"]["critic"], o)[0])(
                normalize(c["obs"], c["obs_stats"]))

            def gae(carry, t):
                adv, next_v = carry
                delta = t["r"] + cfg.gamma * next_v * (1 - t["done"]) - t["value"]
                adv = delta + cfg.gamma * cfg.gae_lambda * (1 - t["done"]) * adv
                return (adv, t["value"]), adv

            _, adv = jax.lax.scan(gae, (jnp.zeros(cfg.num_envs), last_v),
                                  {"r": r, "done": tr["done"].astype(jnp.float32), "value": tr["value"]},
                                  reverse=True)
            targets = adv + tr["value"]
            data = {"obs": tr["obs"], "action": tr["action"], "logp": tr["logp"], "value": tr["value"],
                    "adv": adv, "target": targets}
            data = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), data)

            def loss_fn(p, mb):
                if discrete:
                    logits = jax.vmap(lambda o: _mlp(p["actor"], o))(mb["obs"])
                    logp_all = jax.nn.log_softmax(logits)
                    logp = jnp.take_along_axis(logp_all, mb["action"][:, None], 1)[:, 0]
                    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, -1).mean()
                else:
                    mean = jax.vmap(lambda o: _mlp(p["actor"], o))(mb["obs"])
                    logp = jax.vmap(lambda a, m: _gauss_logp(a, m, p["log_std"]))(mb["action"], mean)
                    entropy = jnp.sum(p["log_std"] + 0.5 * math.log(2 * math.pi * math.e))
                v = jax.vmap(lambda o: _mlp(p["critic"], o)[0])(mb["obs"])
                v_clip = mb["value"] + jnp.clip(v - mb["value"], -cfg.clip_eps, cfg.clip_eps)
                if cfg.clip_value_loss:
                    v_loss = 0.5 * jnp.maximum((v - mb["target"]) ** 2, (v_clip - mb["target"]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((v - mb["target"]) ** 2).mean()
                a = (mb["adv"] - mb["adv"].mean()) / (mb["adv"].std() + 1e-8)
                ratio = jnp.exp(logp - mb["logp"])
                pg = -jnp.minimum(ratio * a, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * a).mean()
                return pg + cfg.vf_coef * v_loss - cfg.ent_coef * entropy

            def epoch(carry, key):
                p, o = carry
                perm = jax.random.permutation(key, batch)
                mbs = jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, mb_size) + x.shape[1:]), data)

                def mb_step(carry, mb):
                    p, o = carry
                    g = jax.grad(loss_fn)(p, mb)
                    upd, o = tx.update(g, o, p)
                    return (optax.apply_updates(p, upd), o), None

                return jax.lax.scan(mb_step, (p, o), mbs)[0], None

            rng, k = jax.random.split(c["rng"])
            (p, o), _ = jax.lax.scan(epoch, (c["params"], c["opt"]), jax.random.split(k, cfg.update_epochs))
            n_done = tr["done"].sum()
            metrics = {
                "components": tr["comps"].mean((0, 1)),
                "reward": tr["reward"].mean(),
                "env_reward": tr["env_reward"].mean(),
                "fitness_sum": tr["fin_fit"].sum(),
                "length_sum": tr["fin_len"].sum(),
                "episodes": n_done,
                "nonfinite": tr["bad"].sum(),
            }
            c = {**c, "params": p, "opt": o, "rng": rng, "obs_stats": obs_stats, "ret_stats": ret_stats}
            return c, metrics

        carry, curve = jax.lax.scan(update, carry, None, num_updates)
        evaluation = _evaluate(carry, idx)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(carry["params"])]))
        return {"curve": curve, "eval": evaluation, "params_finite": finite,
                "nonfinite_rewards": curve["nonfinite"].sum()}

    def _evaluate(c, idx):
        """Deterministic policy, one episode per eval env, no resets: fitness and trajectory stats."""
        n = cfg.num_eval_envs
        rng = jax.random.fold_in(c["rng"], 7)
        obs, es = jax.vmap(env.reset)(jax.random.split(rng, n))
        nf = len(scalar_fields)
        init = {"obs": obs, "es": es, "alive": jnp.ones(n, bool), "fit": jnp.zeros(n), "len": jnp.zeros(n),
                "term": jnp.zeros(n, bool), "rng": rng, "comps": jnp.zeros((n, MAX_COMPONENTS)),
                "reward": jnp.zeros(n), "fmin": jnp.full((n, nf), jnp.inf), "fmax": jnp.full((n, nf), -jnp.inf),
                "fsum": jnp.zeros((n, nf)), "act": jnp.zeros(n)}

        def step(e, _):
            rng, k = jax.random.split(e["rng"])
            obs_n = normalize(e["obs"], c["obs_stats"])
            _, _, env_a = jax.vmap(lambda o: policy(c["params"], o, None, True))(obs_n)
            obs2, es2, env_r, term, trunc = jax.vmap(env.step)(jax.random.split(k, n), e["es"], env_a)
            s, ns = jax.vmap(view)(e["es"]), jax.vmap(view)(es2)
            r, comps = jax.vmap(lambda a, b, d: reward(idx, a, b, d))(s, env_a, ns)
            fit = jax.vmap(task.hooks.fitness_step)(s, env_a, ns, env_r, term)
            live = e["alive"].astype(jnp.float32)
            mags = jax.vmap(field_magnitudes)(ns)
            al = e["alive"][:, None]
            out = {
                "obs": obs2, "es": es2, "rng": rng,
                "fit": e["fit"] + live * fit, "len": e["len"] + live,
                "term": e["term"] | (e["alive"] & term),
                "alive": e["alive"] & ~(term | trunc),
                "comps": e["comps"] + live[:, None] * jnp.nan_to_num(comps),
                "reward": e["reward"] + live * jnp.nan_to_num(r),
                "fmin": jnp.where(al, jnp.minimum(e["fmin"], mags), e["fmin"]),
                "fmax": jnp.where(al, jnp.maximum(e["fmax"], mags), e["fmax"]),
                "fsum": e["fsum"] + live[:, None] * mags,
                "act": e["act"] + live * jnp.abs(jnp.asarray(env_a, jnp.float32)).reshape(n, -1).mean(-1),
            }
            # the first evaluation episode, step by step: what the rollout viewer and the feedback
            # session show (schema fields, reward and components, and body positions when the task has them)
            trace = {"alive": e["alive"][0], "fields": mags[0], "reward": jnp.nan_to_num(r[0]),
                     "components": jnp.nan_to_num(comps[0])}
            if skeleton is not None:
                trace["bodies"] = skeleton[0](jax.tree.map(lambda x: x[0], es2))
            return out, trace

        first_bodies = None if skeleton is None else skeleton[0](jax.tree.map(lambda x: x[0], init["es"]))
        e, trace = jax.lax.scan(step, init, None, env.max_episode_steps)
        if first_bodies is not None:
            trace["first_bodies"] = first_bodies
        steps = jnp.maximum(e["len"].sum(), 1.0)
        return {
            "trace": trace,
            "fitness": e["fit"], "length": e["len"], "terminated": e["term"],
            "components": e["comps"].sum(0) / steps, "reward": e["reward"].sum() / steps,
            "field_min": e["fmin"].min(0), "field_max": e["fmax"].max(0),
            "field_mean": e["fsum"].sum(0) / steps, "action_abs_mean": e["act"].sum() / steps,
        }

    return train


def _gauss_logp(x, mean, log_std):
    return jnp.sum(-0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi))
