"""budget=halving vs budget=uniform: the default search on each task, N runs per side, side by side.

Each run is the real command (``rewardsmith task=T budget=B seed=S``, offline proposer, the task's
default budget, final evaluation on fresh seeds) in its own process; the two budgets alternate so
both see the same machine load. Prints one row per run and, per task, the mean over runs of

  * the best candidate's final fitness (retrained on ``eval_seeds`` fresh seeds),
  * training env steps the candidates used (baselines train the whole budget under both),
  * the ratio halving / uniform of those env steps and of wall time.

    python benchmarks/budget.py [--tasks pendulum,mountain_car_continuous,inverted_pendulum] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(task: str, budget: str, seed: int, root: Path, extra: list[str]) -> dict:
    run_dir = root / f"{task}-{budget}-{seed}"
    cmd = [sys.executable, "-m", "rewardsmith.cli.main", f"task={task}", f"budget={budget}", f"seed={seed}",
           "live=false", f"run_dir={run_dir}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    s = json.loads((run_dir / "summary.json").read_text())
    final = s.get("final_evaluation") or {}
    return {"task": task, "budget": budget, "seed": seed, "wall_s": wall,
            "final_best": (final.get("best") or {}).get("fitness_mean"),
            "final_human": (final.get("human") or {}).get("fitness_mean"),
            "hns": s.get("human_normalised_score"),
            "steps_candidates": s["env_steps"]["candidates"], "steps_baselines": s["env_steps"]["baselines"],
            "stopped_early": s["env_steps"]["stopped_early"], "candidates": sum(s["candidates"].values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="pendulum,mountain_car_continuous,inverted_pendulum")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--extra", default="", help="more overrides for every run, space-separated")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for seed in range(args.runs):
                for budget in ("uniform", "halving"):
                    r = one_run(task, budget, seed, Path(tmp), args.extra.split())
                    rows.append(r)
                    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}),
                          flush=True)
    print()
    print(f"{'task':26s} {'budget':8s} {'final best (mean±sd over runs)':>32s} {'candidate env steps':>20s} "
          f"{'wall s':>8s}")
    for task in args.tasks.split(","):
        agg = {}
        for budget in ("uniform", "halving"):
            rs = [r for r in rows if r["task"] == task and r["budget"] == budget]
            fits = [r["final_best"] for r in rs if r["final_best"] is not None]
            agg[budget] = {"fit": statistics.mean(fits) if fits else float("nan"),
                           "sd": statistics.pstdev(fits) if len(fits) > 1 else 0.0,
                           "steps": statistics.mean(r["steps_candidates"] for r in rs),
                           "wall": statistics.mean(r["wall_s"] for r in rs)}
            a = agg[budget]
            print(f"{task:26s} {budget:8s} {a['fit']:>22.4g} ± {a['sd']:<7.3g} {a['steps']:>20,.0f} {a['wall']:>8.1f}")
        u, h = agg["uniform"], agg["halving"]
        print(f"{task:26s} halving/uniform: candidate env steps {h['steps'] / u['steps']:.2f}, "
              f"wall {h['wall'] / u['wall']:.2f}, final best {h['fit']:.4g} vs {u['fit']:.4g}")


if __name__ == "__main__":
    main()
