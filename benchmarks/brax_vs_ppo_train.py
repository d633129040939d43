"""K candidates on a Brax task at equal env steps: rewardsmith's one program vs K runs of Brax's own
``brax.training.agents.ppo.train`` with each reward in a wrapper. Prints the wall ratio and both sides'
final task fitness (the task's ground truth, evaluated the same way for both).

    python benchmarks/brax_vs_ppo_train.py [--k 8] [--seeds 2] [--task inverted_pendulum] [--steps 100000]

Every candidate is trained with ``--seeds`` seeds on both sides (single PPO runs on this task spread
by hundreds of steps of episode length, so one seed per side cannot say which trainer is better).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--task", default="inverted_pendulum")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()

    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    from brax.training.agents.ppo import train as brax_ppo

    from rewardsmith.export.loaded import LoadedReward
    from rewardsmith.propose.base import ProposalContext
    from rewardsmith.propose.offline import OfflineProposer
    from rewardsmith.tasks import get_task
    from rewardsmith.train.population import train_population
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.train.ppo import PPOConfig
    from rewardsmith.validate.load import load_reward_fn
    from rewardsmith.validate.trace import shape_check
    from rewardsmith.wrappers import BraxRewardWrapper

    task = get_task(args.task)
    cfg = PPOConfig.from_dict({**task.ppo, "total_timesteps": args.steps})
    props = OfflineProposer().propose(ProposalContext(task=task, generation=0, k=args.k, history=[], seed=2))
    checked = [shape_check(pr.source, str(i), task, MAX_COMPONENTS) for i, pr in enumerate(props)]
    branches = [b for _, b in checked]
    seeds = list(range(args.seeds))
    print(f"{args.task}: K={args.k} candidates x {len(seeds)} seeds, {cfg.env_steps} env steps each, "
          f"{jax.device_count()} devices", flush=True)

    t0 = time.perf_counter()
    out, timing = train_population(task, cfg, branches, [b for b in range(args.k) for _ in seeds],
                                   [s for _ in range(args.k) for s in seeds])
    ours_wall = time.perf_counter() - t0
    ours_fit = np.asarray(out["eval"]["fitness"]).mean(1).reshape(args.k, len(seeds))
    print(f"rewardsmith, one program: {ours_wall:.1f} s (compile {timing['compile_s']:.1f} s, "
          f"train {timing['train_s']:.1f} s)", flush=True)

    adapter = task.make_env()
    unroll, n_mb = cfg.num_steps, cfg.num_minibatches
    batch = cfg.num_envs // n_mb

    def evaluate(make_policy, params, seed=0):
        policy = make_policy(params, deterministic=True)
        fit_fn = task.hooks.fitness_step
        view = lambda es: task.schema.make_state(task.hooks.state_view(es))  # noqa: E731

        @jax.jit
        def rollout(key):
            _, es = jax.vmap(adapter.reset)(jax.random.split(key, cfg.num_eval_envs))

            def step(c, k):
                es, alive, fit = c
                act, _ = jax.vmap(policy)(es.inner.obs, jax.random.split(k, cfg.num_eval_envs))
                _, es2, r, term, trunc = jax.vmap(adapter.step)(jax.random.split(k, cfg.num_eval_envs), es, act)
                f = jax.vmap(fit_fn)(jax.vmap(view)(es), act, jax.vmap(view)(es2), r, term)
                fit = fit + alive * f
                return (es2, alive * (1 - (term | trunc)), fit), None

            (_, _, fit), _ = jax.lax.scan(step, (es, jnp.ones(cfg.num_eval_envs), jnp.zeros(cfg.num_eval_envs)),
                                          jax.random.split(key, adapter.max_episode_steps))
            return fit.mean()

        return float(rollout(jax.random.PRNGKey(seed)))

    t0 = time.perf_counter()
    brax_fit = []
    for i, (v, _) in enumerate(checked):
        fn = load_reward_fn(props[i].source, str(i))
        reward = LoadedReward(fn=fn, task=task.name, schema=task.schema, components=tuple(v.components),
                              source=props[i].source, path="")
        env = BraxRewardWrapper(adapter.env, reward)
        train_fn = functools.partial(
            brax_ppo.train, num_timesteps=cfg.env_steps, episode_length=adapter.max_episode_steps,
            num_envs=cfg.num_envs, batch_size=batch, num_minibatches=n_mb, unroll_length=unroll,
            num_updates_per_batch=cfg.update_epochs, learning_rate=cfg.lr, entropy_cost=cfg.ent_coef,
            discounting=cfg.gamma, gae_lambda=cfg.gae_lambda, normalize_observations=True, num_evals=2)
        fits = []
        for s in seeds:
            make_policy, params, _ = train_fn(environment=env, seed=s)
            fits.append(evaluate(make_policy, params))
        brax_fit.append(fits)
        print(f"  brax ppo.train candidate {i}: fitness {', '.join(f'{f:.1f}' for f in fits)} "
              f"({time.perf_counter() - t0:.0f} s so far)", flush=True)
    brax_wall = time.perf_counter() - t0
    brax_fit = np.asarray(brax_fit)
    runs = args.k * len(seeds)
    print(f"brax ppo.train x {runs}: {brax_wall:.1f} s")
    print(f"\nwall ratio, {runs} brax ppo.train runs / one rewardsmith program: {brax_wall / ours_wall:.2f}x")
    for name, f in (("rewardsmith", ours_fit), ("brax ppo.train", brax_fit)):
        per_seed = ", ".join(f"{v:.1f}" for v in f.mean(0))
        print(f"mean final fitness, {name}: {f.mean():.1f} (per seed: {per_seed})")
    print("per candidate, mean over seeds (rewardsmith / brax): "
          + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(ours_fit.mean(1), brax_fit.mean(1))))


if __name__ == "__main__":
    main()
