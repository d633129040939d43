"""Does the search matter? The default search on every CPU task, N runs each, in one table.

Each run is the real command (``rewardsmith task=T train=P seed=S``: offline proposer unless ``--extra``
says otherwise, final evaluation on 5 fresh seeds) in its own process. Per task the table gives, as
mean ± sd over runs:

  * the best candidate's final fitness (retrained on ``eval_seeds`` fresh seeds at the search budget),
  * the human (or, for new behaviours, reference) and sparse baselines' final fitness at the same budget,
  * HNS = (best - sparse) / (human - sparse), per run, then averaged,
  * env steps the whole run trained (candidates, baselines, finals, final evaluation) and wall time.

Each run's line also says whether the finals (the top 3 trained on 5 more seeds) changed the pick.

Run folders are kept under ``--out`` (default outputs/benchmarks/search_quality); a run whose
summary is already there is read, not repeated, so a long table can be built a few rows at a time.

    python benchmarks/search_quality.py [--tasks pendulum,hopper_jump] [--runs 3] [--extra "budget=halving"]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLASSIC = ["pendulum", "mountain_car_continuous"]
BRAX = ["inverted_pendulum", "reacher", "hopper", "halfcheetah"]
NEW_BEHAVIOURS = ["hopper_jump", "halfcheetah_backflip", "ant_spin"]


def preset(task: str) -> str:
    return "cpu"  # every task has one: the classic-control tasks' default budget, the Brax tasks' CPU budget


def one_run(task: str, seed: int, root: Path, extra: list[str]) -> dict:
    run_dir = root / f"{task}-{seed}"
    summary_path = run_dir / "summary.json"
    wall = None
    if not (summary_path.exists() and json.loads(summary_path.read_text()).get("status") == "complete"):
        cmd = [sys.executable, "-m", "rewardsmith.cli.main", f"task={task}", f"train={preset(task)}",
               f"seed={seed}", "live=false", f"run_dir={run_dir}", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        (run_dir / "wall_s.txt").write_text(f"{wall:.1f}\n")
    elif (run_dir / "wall_s.txt").exists():
        wall = float((run_dir / "wall_s.txt").read_text())
    s = json.loads(summary_path.read_text())
    final = s.get("final_evaluation") or {}
    best, human, sparse = (final.get(k) or {} for k in ("best", "human", "sparse"))
    b, h, sp = best.get("fitness_mean"), human.get("fitness_mean"), sparse.get("fitness_mean")
    steps = s.get("env_steps") or {}
    final_steps = (final.get("env_steps_per_member") or 0) * len(final.get("eval_seeds") or []) * 3
    race = s.get("finals") or {}
    race_steps = (race.get("env_steps_per_member") or 0) * len(race.get("seeds") or []) * len(race.get("finalists") or [])
    return {"task": task, "seed": seed, "wall_s": wall if wall is not None else s.get("wall_time_s"),
            "best": b, "best_sd": best.get("fitness_std"), "human": h, "sparse": sp, "hns": final.get("hns"),
            # every fresh seed's final fitness: the margin over the sparse reward is judged on these
            "best_seeds": best.get("per_seed") or [], "sparse_seeds": sparse.get("per_seed") or [],
            "eval_seeds": len(final.get("eval_seeds") or []),
            "proposer": s.get("proposer_kind"),
            # the finals picked another candidate than the search's ranking on its training seeds
            "finals_changed_pick": (race.get("winner") != race.get("search_best")) if race else None,
            "env_steps": steps.get("candidates", 0) + steps.get("baselines", 0) + race_steps + final_steps,
            "prefilter": prefilter_figures(run_dir, s)}


def prefilter_figures(run_dir: Path, s: dict) -> dict | None:
    """``prefilter=``: what it judged and skipped, and, for every candidate it flagged (skipped, or in
    ``measure`` mode trained anyway), whether that candidate beat the best of the rest of its
    generation (a false skip when it was skipped or would have been)."""
    pf = s.get("prefilter")
    if not pf:
        return None
    by_gen: dict[int, list[dict]] = {}
    for p in (run_dir / "generations").glob("gen_*/candidates/*/candidate.json"):
        c = json.loads(p.read_text())
        by_gen.setdefault(c["generation"], []).append(c)
    flagged = beat = 0
    for cands in by_gen.values():
        for c in cands:
            v = c.get("prefilter") or {}
            if not v.get("reason"):
                continue
            flagged += 1
            rest = [o["fitness"] for o in cands if o is not c and o.get("fitness") is not None]
            if c.get("fitness") is not None and rest and c["fitness"] > max(rest):
                beat += 1
    per_candidate = (s.get("env_steps_per_member") or 0) * len(s.get("seeds") or [])
    return {"mode": pf.get("mode"), "judged": pf.get("judged"), "skipped": len(pf.get("skipped") or []),
            "flagged": flagged, "flagged_beat_generation_best": beat,
            "env_steps_saved": pf.get("env_steps_saved"), "env_steps_flagged": flagged * per_candidate}


def _ms(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4g} ± {sd:.2g}"


def margin(best: list, sparse: list) -> dict | None:
    """The best reward's margin over the sparse one, on per-seed final fitness pooled over runs:
    the difference of means, its standard error (Welch), t = difference / se, and how many of the
    best's seeds beat the sparse reward's best seed. Clear: t >= 3 (a difference about three times
    what seed noise alone makes)."""
    b = [v for v in best if v is not None]
    s = [v for v in sparse if v is not None]
    if len(b) < 2 or len(s) < 2:
        return None
    diff = statistics.mean(b) - statistics.mean(s)
    se = (statistics.variance(b) / len(b) + statistics.variance(s) / len(s)) ** 0.5
    t = diff / se if se > 0 else (float("inf") if diff > 0 else 0.0)
    return {"diff": diff, "se": se, "t": t, "above_sparse_max": sum(v > max(s) for v in b), "n": len(b),
            "clear": t >= 3.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(CLASSIC + BRAX + NEW_BEHAVIOURS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="outputs/benchmarks/search_quality")
    ap.add_argument("--extra", default="", help="more overrides for every run, space-separated")
    args = ap.parse_args()
    root = Path(args.out)
    rows = []
    for task in args.tasks.split(","):
        for seed in range(args.runs):
            r = one_run(task, seed, root, args.extra.split())
            rows.append(r)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    print()
    print("| task | preset | runs | best (final, fresh seeds) | human / reference | sparse | HNS | margin over sparse "
          "(pooled seeds) | env steps | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        rs = [r for r in rows if r["task"] == task]
        walls = [r["wall_s"] for r in rs if r["wall_s"] is not None]
        print(f"| {task} | {preset(task)} | {len(rs)} | {_ms([r['best'] for r in rs])} | "
              f"{_ms([r['human'] for r in rs])} | {_ms([r['sparse'] for r in rs])} | "
              f"{_ms([r['hns'] for r in rs])} | {_margin_text(rs)} | {statistics.mean(r['env_steps'] for r in rs):,.0f} | "
              f"{statistics.mean(walls) if walls else float('nan'):.0f} |")
    pre = [r for r in rows if r.get("prefilter")]
    if pre:
        print()
        print("| task | mode | runs | judged | skipped | flagged (skipped, or would be) | flagged that beat their "
              "generation's best | env steps saved | env steps of the flagged | env steps of the runs |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for task in args.tasks.split(","):
            rs = [r for r in pre if r["task"] == task]
            if not rs:
                continue
            tot = {k: sum(r["prefilter"][k] or 0 for r in rs) for k in
                   ("judged", "skipped", "flagged", "flagged_beat_generation_best", "env_steps_saved", "env_steps_flagged")}
            print(f"| {task} | {rs[0]['prefilter']['mode']} | {len(rs)} | {tot['judged']} | {tot['skipped']} | "
                  f"{tot['flagged']} | {tot['flagged_beat_generation_best']} | {tot['env_steps_saved']:,} | "
                  f"{tot['env_steps_flagged']:,} | {sum(r['env_steps'] for r in rs):,} |")


def _margin_text(rs: list[dict]) -> str:
    m = margin([v for r in rs for v in r["best_seeds"]], [v for r in rs for v in r["sparse_seeds"]])
    if m is None:
        return "-"
    return (f"{m['diff']:+.3g} ± {m['se']:.2g} (t {m['t']:.1f}{', clear' if m['clear'] else ''}; "
            f"{m['above_sparse_max']}/{m['n']} seeds above sparse's best)")


if __name__ == "__main__":
    main()
