"""``rewardsmith-export run_dir=PATH out=my_reward.py [format=jax|numpy] [candidate=ID]``."""

from __future__ import annotations

import sys
from pathlib import Path

from rewardsmith.errors import UserError


def export(run_dir: str | Path, out: str | Path, fmt: str = "jax", candidate: str | None = None) -> Path:
    from rewardsmith.export.module import render_export
    from rewardsmith.export.numpy_transform import NumpyExportError
    from rewardsmith.records import Candidate
    from rewardsmith.rundir import RunDir, atomic_write_text
    from rewardsmith.tasks.registry import task_named

    rd = RunDir(run_dir, create=False)
    root = rd.root
    if not rd.has_summary():
        raise UserError(f"{root} is not a rewardsmith run directory (no {rd.SUMMARY})")
    summary = rd.read_summary()
    cid = candidate or summary.best_candidate_id
    if not cid:
        raise UserError(f"{root} has no best candidate yet; name one with candidate=<id>")
    record = rd.find_candidate(cid)
    if record is None:
        raise UserError(f"no candidate {cid!r} in {root}")
    cand = Candidate.from_json(record)
    if cand.validation is None or not cand.validation.ok:
        raise UserError(f"candidate {cid} did not pass validation; nothing to export")
    task = task_named(summary.task, near=root)
    try:
        text = render_export(cand, task, {"run_dir": str(root.resolve()), "proposer": summary.proposer,
                                          "model": summary.model}, fmt)
    except NumpyExportError as e:
        raise UserError(f"cannot export {cid} as numpy: {e}") from None
    except ValueError as e:
        raise UserError(str(e)) from None
    atomic_write_text(out, text)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    from rewardsmith.cli.common import parse_kv, run_command

    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        args = parse_kv(argv, {"run_dir", "out", "format", "candidate"})
        if "run_dir" not in args or "out" not in args:
            raise UserError("usage: rewardsmith-export run_dir=PATH out=FILE.py [format=jax|numpy] [candidate=ID]")
        print(export(args["run_dir"], args["out"], args.get("format", "jax"), args.get("candidate")))
        return 0

    return run_command("rewardsmith-export", body, "stopped; nothing was written")


if __name__ == "__main__":
    sys.exit(main())
