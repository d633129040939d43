"""What the small ``key=value`` commands (report, export, feedback, resume) share: argument parsing and
turning bad input into one line on stderr with exit code 2."""

from __future__ import annotations

import sys
from typing import Callable

from rewardsmith.errors import UserError


def parse_kv(argv: list[str], allowed: set[str]) -> dict[str, str]:
    out = {}
    for a in argv:
        key, sep, value = a.partition("=")
        key = key.lstrip("-")
        if not sep or key not in allowed:
            raise ValueError(f"unexpected argument {a!r}; expected {' '.join(k + '=...' for k in sorted(allowed))}")
        out[key] = value
    return out


def int_arg(args: dict, key: str, default: int | None) -> int | None:
    if key not in args:
        return default
    try:
        return int(args[key])
    except ValueError:
        raise UserError(f"{key} must be an integer, got {args[key]!r}") from None


def run_command(prog: str, body: Callable[[], int | None], interrupted: str) -> int:
    """Run ``body``; a UserError or ValueError is one line and exit code 2, Ctrl-C exit code 130."""
    try:
        return body() or 0
    except (UserError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
