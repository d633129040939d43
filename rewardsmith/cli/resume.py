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
    from rewardsmith.cli.common import int_arg, parse_kv, run_command, summary_exit_code

    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        args = parse_kv(argv, KEYS)
        if "run_dir" not in args:
            raise UserError("usage: rewardsmith-resume run_dir=PATH [iterations=N] "
                            "[selection=fitness|preference|both] [live=auto|true|false]")
        overrides: dict = {}
        if "selection" in args:
            overrides["selection"] = args["selection"]
        if "worker_timeout_s" in args:
            try:
                overrides["worker_timeout_s"] = float(args["worker_timeout_s"])
            except ValueError:
                raise UserError(f"worker_timeout_s must be a number, got {args['worker_timeout_s']!r}") from None
        summary = resume_with_display(args["run_dir"], int_arg(args, "iterations", None), args.get("live", "auto"),
                                      overrides)
        return summary_exit_code("rewardsmith-resume", summary, args["run_dir"])

    return run_command("rewardsmith-resume", body, "interrupted; everything so far is in the run directory")


if __name__ == "__main__":
    sys.exit(main())
