"""``rewardsmith-report run_dir=PATH``: regenerate report.html from a run directory alone."""

from __future__ import annotations

import sys


def parse_kv(argv: list[str], allowed: set[str]) -> dict[str, str]:
    out = {}
    for a in argv:
        key, sep, value = a.partition("=")
        key = key.lstrip("-")
        if not sep or key not in allowed:
            raise ValueError(f"unexpected argument {a!r}; expected {' '.join(k + '=...' for k in sorted(allowed))}")
        out[key] = value
    return out


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
