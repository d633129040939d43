"""``rewardsmith-resume run_dir=PATH [iterations=N] [selection=fitness|preference|both] [live=auto]``:
continue a run from its run directory. An interrupted run finishes its configured generations; a
finished one runs ``iterations`` more (default 1), with any human feedback in ``feedback.json``."""

from __future__ import annotations

import sys

from rewardsmith.errors import UserError

KEYS = {"run_dir", "iterations", "selection", "live", "worker_timeout_s"}


def resume_with_display(run_dir: str, iterations: int | None, live: str = "auto", overrides: dict | None = None):
    from rewardsmith.cli.display import Display
    from rewardsmith.evolve import resume

    display = Display(live=None if live == "auto" else live in ("true", "1", "yes", True))
    return resume(run_dir, iterations=iterations, overrides=overrides, display=display)


def main(argv: list[str] | None = None) -> int:
    from rewardsmith.report.cli import parse_kv

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_kv(argv, KEYS)
        if "run_dir" not in args:
            raise UserError("usage: rewardsmith-resume run_dir=PATH [iterations=N] "
                            "[selection=fitness|preference|both] [live=auto|true|false]")
        iterations = None
        if "iterations" in args:
            try:
                iterations = int(args["iterations"])
            except ValueError:
                raise UserError(f"iterations must be a positive integer, got {args['iterations']!r}") from None
        overrides = {}
        if "selection" in args:
            overrides["selection"] = args["selection"]
        if "worker_timeout_s" in args:
            overrides["worker_timeout_s"] = float(args["worker_timeout_s"])
        resume_with_display(args["run_dir"], iterations, args.get("live", "auto"), overrides)
    except (UserError, ValueError) as e:
        print(f"rewardsmith-resume: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rewardsmith-resume: interrupted; everything so far is in the run directory", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
