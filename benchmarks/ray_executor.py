"""executor=ray vs executor=local: the wall time of one K-candidate CartPole generation, side by side.

Each repetition runs the same one-generation search (offline proposer, K candidates + both baselines
x 2 seeds, the task's default budget, no compilation cache, so both sides compile cold) once with
the local warm worker and once as shards on a Ray cluster started beforehand on this machine (its
start-up is reported on its own line); the two alternate so both see the same machine load. Prints
one row per run and the mean ratio ray / local of the generation's wall time.

Run it inside a network namespace, so Ray binds loopback only:

    unshare -rn sh -c 'ip link set lo up && .venv/bin/python benchmarks/ray_executor.py [--k 16] [--reps 3]'
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def one_run(executor: dict, k: int, seed: int, root: Path) -> dict:
    from rewardsmith.evolve.loop import run
    from rewardsmith.rundir import RunDir

    cfg = {"task": {"name": "cartpole"}, "iterations": 1, "samples": k, "seeds": 2, "seed": seed,
           "final_eval": False, "live": False, "compile_cache": False, "executor": executor}
    run_dir = root / f"{executor['name']}-{seed}"
    t0 = time.perf_counter()
    summary = run(cfg, run_dir)
    wall = time.perf_counter() - t0
    gen = RunDir(run_dir, create=False).generation_records()[-1]
    return {"executor": executor["name"], "seed": seed, "generation_s": gen["wall_s"], "run_s": wall,
            "best": summary["best_fitness"], "trained": summary["candidates"].get("trained")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import ray

    from rewardsmith.train.cluster import LocalCluster, _use_token

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cluster = LocalCluster(Path(tmp) / "cluster", cpus=None)
        cluster.wait_ready(120)
        _use_token(cluster.auth_env)
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        print(json.dumps({"ray_cluster_start_s": round(time.perf_counter() - t0, 2)}), flush=True)
        try:
            for rep in range(args.reps):
                order = ("local", "ray") if rep % 2 == 0 else ("ray", "local")
                for name in order:
                    ex = {"name": "local"} if name == "local" else {"name": "ray", "address": cluster.address}
                    r = one_run(ex, args.k, rep, Path(tmp))
                    rows.append(r)
                    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}),
                          flush=True)
        finally:
            ray.shutdown()
            cluster.stop()
    print()
    by = {n: [r for r in rows if r["executor"] == n] for n in ("local", "ray")}
    ratios = [ry["generation_s"] / lo["generation_s"] for lo, ry in zip(by["local"], by["ray"])]
    for n, rs in by.items():
        walls = [r["generation_s"] for r in rs]
        print(f"{n:6s} generation wall: {statistics.mean(walls):.1f} s (runs: {', '.join(f'{w:.1f}' for w in walls)})")
    print(f"ratio ray / local (generation wall, K={args.k}): {statistics.mean(ratios):.2f} "
          f"(per repetition: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
