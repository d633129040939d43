"""One generation (K candidates x 1 seed, CartPole by default) trained by rewardsmith vs K separate programs.

Prints, measured side by side in one run (each mode in its own process, so compile caches and peak
memory are its own):
  * wall ratio  K separate programs / one rewardsmith generation, for
      - split (default): trainer compiled once per task and settings, rewards as their own program,
        first generation in a fresh process with an empty compilation cache,
      - the same, first generation of a later run (JAX's persistent cache holds the trainer),
      - fused: one program per generation with the rewards inside;
  * the second generation (K new candidates) in the same worker process, split vs fused;
  * speed-up of the split trainer on all devices vs one device (training only).

    python benchmarks/population.py [--k 16] [--steps 100000] [--task cartpole]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _mode(args) -> dict:
    if args.devices == "all":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count()}"
    import jax
    import numpy as np

    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from rewardsmith.propose.base import ProposalContext
    from rewardsmith.propose.offline import OfflineProposer
    from rewardsmith.tasks import get_task
    from rewardsmith.train.population import train_population
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.train.ppo import PPOConfig, make_train
    from rewardsmith.validate.trace import shape_check

    task = get_task(args.task)
    program = "fused" if args.mode == "fused" else "split"
    cfg = PPOConfig.from_dict({**task.ppo, "total_timesteps": args.steps, "program": program})

    def branches(generation: int):
        props = OfflineProposer().propose(ProposalContext(task=task, generation=generation, k=args.k, history=[],
                                                          seed=1 + generation))
        return [shape_check(p.source, str(i), task, MAX_COMPONENTS)[1] for i, p in enumerate(props)]

    gens = []
    if args.mode == "separate":
        t0 = time.perf_counter()
        fitness = []
        for b in branches(0):
            train = jax.jit(make_train(cfg, task, [b]))
            out = jax.block_until_ready(train(jax.random.PRNGKey(0)))
            fitness.append(float(np.asarray(out["eval"]["fitness"]).mean()))
        gens.append({"wall_s": time.perf_counter() - t0, "fitness": fitness})
    else:
        devices = jax.devices() if args.devices == "all" else jax.devices()[:1]
        for g in range(args.generations):
            br = branches(g)
            t0 = time.perf_counter()
            out, timing = train_population(task, cfg, br, list(range(args.k)), [0] * args.k, devices=devices)
            gens.append({"wall_s": time.perf_counter() - t0, "fitness": np.asarray(out["eval"]["fitness"]).mean(1).tolist(),
                         **{k: timing[k] for k in ("compile_s", "train_s", "devices", "reward_compile_s")}})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": args.mode, "generations": gens, "peak_rss_mb": peak_mb, "env_steps_per_member": cfg.env_steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--task", default="cartpole")
    p.add_argument("--mode", choices=["split", "fused", "separate"])
    p.add_argument("--devices", choices=["all", "one"], default="all")
    p.add_argument("--generations", type=int, default=2)
    p.add_argument("--cache", default="")
    args = p.parse_args()
    if args.mode:
        print(json.dumps(_mode(args)))
        return
    cache = tempfile.mkdtemp(prefix="rewardsmith-bench-cache-")
    runs = {  # name: (mode, devices, generations, cache dir)
        "split": ("split", "all", 2, cache),
        "split, later run (warm cache)": ("split", "all", 1, cache),
        "split, one device": ("split", "one", 1, ""),
        "fused": ("fused", "all", 2, ""),
        "separate": ("separate", "one", 1, ""),
    }
    results = {}
    for name, (mode, devices, generations, cache_dir) in runs.items():
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        r = subprocess.run([sys.executable, __file__, "--mode", mode, "--devices", devices, "--k", str(args.k),
                            "--steps", str(args.steps), "--task", args.task, "--generations", str(generations),
                            "--cache", cache_dir], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"{name} failed:\n{r.stderr[-2000:]}")
        res = results[name] = json.loads(r.stdout.strip().splitlines()[-1])
        for g, gen in enumerate(res["generations"]):
            extra = (f"   compile {gen['compile_s']:.1f} s (rewards {gen['reward_compile_s']:.1f} s), train "
                     f"{gen['train_s']:.1f} s on {gen['devices']} device(s)") if "compile_s" in gen else ""
            print(f"{name:>30} gen {g}: wall {gen['wall_s']:7.1f} s{extra}", flush=True)
        print(f"{'':>30} peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    sep = results["separate"]["generations"][0]["wall_s"]
    first = {n: results[n]["generations"][0] for n in ("split", "split, later run (warm cache)", "fused")}
    second = {n: results[n]["generations"][1] for n in ("split", "fused")}
    print(f"\n{args.task}, K={args.k} x 1 seed, {results['split']['env_steps_per_member']} env steps per member")
    for n, g in first.items():
        print(f"wall ratio, {args.k} separate programs / one generation ({n}): {sep / g['wall_s']:.2f}x")
    for n, g in second.items():
        print(f"second generation in the same worker ({n}): wall {g['wall_s']:.1f} s, compile {g['compile_s']:.1f} s;"
              f" {args.k} separate programs / it: {sep / g['wall_s']:.2f}x")
    one = results["split, one device"]["generations"][0]
    print(f"training speed-up, {first['split']['devices']} devices vs 1 (split trainer): "
          f"{one['train_s'] / first['split']['train_s']:.2f}x")
    fit = {n: sum(g["fitness"]) / len(g["fitness"]) for n, g in (("split", first["split"]), ("fused", first["fused"]),
                                                                 ("separate", results["separate"]["generations"][0]))}
    print("mean fitness, first generation (split / fused / separate): "
          + " / ".join(f"{fit[n]:.1f}" for n in ("split", "fused", "separate")))


if __name__ == "__main__":
    main()
