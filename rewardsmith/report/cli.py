"""``rewardsmith-report run_dir=PATH``: regenerate report.html from a run directory alone."""

from __future__ import annotations

import sys

from rewardsmith.cli.common import parse_kv, run_command
from rewardsmith.errors import UserError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        args = parse_kv(argv, {"run_dir"})
        if "run_dir" not in args:
            raise UserError("usage: rewardsmith-report run_dir=PATH")
        from rewardsmith.report import write_report

        try:
            path = write_report(args["run_dir"])
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
        print(path)
        return 0

    return run_command("rewardsmith-report", body, "stopped; the run directory is unchanged")


if __name__ == "__main__":
    sys.exit(main())
