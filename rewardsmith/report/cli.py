"""``rewardsmith-report run_dir=PATH``: regenerate report.html from a run directory alone."""

from __future__ import annotations

import sys

from rewardsmith.cli.common import parse_kv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_kv(argv, {"run_dir"})
        if "run_dir" not in args:
            raise ValueError("usage: rewardsmith-report run_dir=PATH")
        from rewardsmith.report import write_report

        path = write_report(args["run_dir"])
    except (ValueError, FileNotFoundError) as e:
        print(f"rewardsmith-report: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
