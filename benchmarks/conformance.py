"""Conformance of ``task=own task.env=...`` over the ecosystem: every environment id gymnax
registers and every environment Brax registers (schema inferred, action spec equal to the
environment's own space, action reaches the env, two PPO updates, finite fitness, task file reloads).

    python benchmarks/conformance.py                 # all of them (Brax: about a minute each here)
    python benchmarks/conformance.py --only gymnax   # the gymnax ids only (a minute or two)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewardsmith.evaluate.conformance import brax_names, check_env, gymnax_ids, summary, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["gymnax", "brax"], default=None)
    ap.add_argument("--env", action="append", default=None, help="only these sources (repeatable)")
    ap.add_argument("--out", default="outputs/benchmarks/conformance.json")
    args = ap.parse_args()
    sources = ([] if args.only == "brax" else gymnax_ids()) + ([] if args.only == "gymnax" else brax_names())
    sources = [s for s in sources if s in args.env] if args.env else sources
    rows = []
    for src in sources:
        row = check_env(src)
        rows.append(row)
        print(f"{'PASS' if row.ok else 'FAIL'} {src} ({row.seconds} s) {row.action} {row.stage} {row.reason}",
              flush=True)
    print()
    print(table(rows))
    for prefix in ("gymnax:", "brax:"):
        s = summary(rows, prefix)
        if s["registered"]:
            print(f"{prefix[:-1]}: {s['passed']} passed of {s['registered']} registered; needs data: "
                  f"{s['needs_data'] or 'none'}; failed: {s['failed'] or 'none'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps([r.__dict__ for r in rows], indent=1))


if __name__ == "__main__":
    main()
