"""One generation (K candidates x 1 seed, CartPole) trained as one program vs K separate programs.

Prints, measured side by side in one run (each mode in its own process so peak memory is its own):
  * wall ratio  separate programs / one program on all devices   (compile + train, equal env steps)
  * speed-up    one program on 1 device / one program on all devices
  * peak RSS of each mode

    python benchmarks/population.py [--k 16] [--steps 100000] [--task cartpole]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _mode(args) -> dict:
    if args.mode == "one_all":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count()}"
    import jax
    import numpy as np

    from rewardsmith.propose.base import ProposalContext
    from rewardsmith.propose.offline import OfflineProposer
    from rewardsmith.tasks import get_task
    from rewardsmith.train.population import train_population
    from rewardsmith.train.ppo import MAX_COMPONENTS, PPOConfig, make_train
    from rewardsmith.validate.trace import shape_check

    task = get_task(args.task)
    cfg = PPOConfig.from_dict({**task.ppo, "total_timesteps": args.steps})
    props = OfflineProposer().propose(ProposalContext(task=task, generation=0, k=args.k, history=[], seed=1))
    branches = [shape_check(p.source, str(i), task, MAX_COMPONENTS)[1] for i, p in enumerate(props)]
    t0 = time.perf_counter()
    if args.mode in ("one_all", "one_single"):
        devices = jax.devices() if args.mode == "one_all" else jax.devices()[:1]
        out, timing = train_population(task, cfg, branches, list(range(args.k)), [0] * args.k, devices=devices)
        fitness = np.asarray(out["eval"]["fitness"]).mean(1).tolist()
        extra = {"compile_s": timing["compile_s"], "train_s": timing["train_s"], "devices": timing["devices"]}
    else:
        fitness, extra = [], {}
        for b in branches:
            train = jax.jit(make_train(cfg, task, [b]))
            out = jax.block_until_ready(train(jax.random.PRNGKey(0)))
            fitness.append(float(np.asarray(out["eval"]["fitness"]).mean()))
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": args.mode, "wall_s": wall, "peak_rss_mb": peak_mb, "fitness": fitness,
            "env_steps_per_member": cfg.env_steps, **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--task", default="cartpole")
    p.add_argument("--mode", choices=["one_all", "one_single", "separate"])
    args = p.parse_args()
    if args.mode:
        print(json.dumps(_mode(args)))
        return
    results = {}
    for mode in ("one_all", "one_single", "separate"):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        r = subprocess.run([sys.executable, __file__, "--mode", mode, "--k", str(args.k), "--steps",
                            str(args.steps), "--task", args.task], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"mode {mode} failed:\n{r.stderr[-2000:]}")
        results[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        res = results[mode]
        print(f"{mode:>10}: wall {res['wall_s']:7.1f} s   peak RSS {res['peak_rss_mb']:7.0f} MB"
              + (f"   compile {res['compile_s']:.1f} s, train {res['train_s']:.1f} s on {res['devices']} device(s)"
                 if "compile_s" in res else ""), flush=True)
    a, s, sep = results["one_all"], results["one_single"], results["separate"]
    print(f"\n{args.task}, K={args.k} x 1 seed, {a['env_steps_per_member']} env steps per member")
    print(f"wall ratio, {args.k} separate programs / one program on all devices: {sep['wall_s'] / a['wall_s']:.2f}x")
    print(f"wall ratio, {args.k} separate programs / one program on one device:  {sep['wall_s'] / s['wall_s']:.2f}x")
    print(f"speed-up from splitting over {a['devices']} devices vs 1 (whole program): {s['wall_s'] / a['wall_s']:.2f}x"
          f"   (training only: {s['train_s'] / a['train_s']:.2f}x)")
    print("mean fitness (one program, all devices / separate): "
          f"{sum(a['fitness']) / len(a['fitness']):.1f} / {sum(sep['fitness']) / len(sep['fitness']):.1f}")


if __name__ == "__main__":
    main()
