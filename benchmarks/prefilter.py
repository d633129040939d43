"""What the pre-filter would skip, and what that would cost: searches with ``prefilter=measure``
(every candidate judged on the stored episodes, every candidate trained anyway), read per rule.

For each rule (low rank; a copy at a correlation threshold) and task: candidates judged, flagged,
flagged that beat the best of the rest of their generation (a false skip, the issue's measure), flagged
copies that beat the candidate they copy, and the env steps the flagged candidates trained (what the
rule would have saved) against the whole run's.

    python benchmarks/prefilter.py --tasks pendulum,mountain_car_continuous,inverted_pendulum --runs 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import one_run  # noqa: E402

RULES = (("rank < 0 (prefilter=rank)", lambda v: v.get("rank") is not None and v["rank"] < 0.0),
         # the run's own copy rule: correlation >= prefilter_redundant, and no offset where episodes end early
         ("copy", lambda v: bool(v.get("redundant_of"))),
         ("rank < 0 or copy (prefilter=rank+dedupe)", lambda v: (v.get("rank") is not None and v["rank"] < 0.0)
          or bool(v.get("redundant_of"))),
         ("closest correlation >= 0.99, any offset", lambda v: (v.get("corr") or 0.0) >= 0.99))


def judged(run_dir: Path) -> list[dict]:
    """Every judged candidate with its generation's other fitnesses and the fitness of the one it copies."""
    cands = [json.loads(p.read_text()) for p in run_dir.glob("generations/gen_*/candidates/*/candidate.json")]
    by_id = {c["id"]: c for c in cands}
    for p in run_dir.glob("baselines/*/candidate.json"):
        c = json.loads(p.read_text())
        by_id[c["id"]] = c
    out = []
    for c in cands:
        v = c.get("prefilter")
        if not v:
            continue
        rest = [o["fitness"] for o in cands if o["generation"] == c["generation"] and o["id"] != c["id"]
                and o.get("fitness") is not None]
        original = by_id.get(v.get("redundant_of") or "", {}).get("fitness")
        out.append({"verdict": v, "fitness": c.get("fitness"), "best_of_rest": max(rest) if rest else None,
                    "original": original, "env_steps": c.get("env_steps") or 0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="pendulum,mountain_car_continuous,inverted_pendulum")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="outputs/benchmarks/prefilter_measure")
    args = ap.parse_args()
    root = Path(args.out)
    print("| task | runs | rule | judged | flagged | flagged that beat their generation's best | flagged copies that "
          "beat their original | env steps of the flagged | env steps of the runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        rows, total = [], 0
        for seed in range(args.runs):
            r = one_run(task, seed, root, ["prefilter=measure"])
            total += r["env_steps"]
            rows += judged(root / f"{task}-{seed}")
        for name, rule in RULES:
            flagged = [j for j in rows if rule(j["verdict"])]
            beat = sum(1 for j in flagged if j["fitness"] is not None and j["best_of_rest"] is not None
                       and j["fitness"] > j["best_of_rest"])
            beat_original = sum(1 for j in flagged if j["verdict"].get("redundant_of") and j["fitness"] is not None
                                and j["original"] is not None and j["fitness"] > j["original"])
            print(f"| {task} | {args.runs} | {name} | {len(rows)} | {len(flagged)} | {beat} | {beat_original} | "
                  f"{sum(j['env_steps'] for j in flagged):,} | {total:,} |", flush=True)


if __name__ == "__main__":
    main()
