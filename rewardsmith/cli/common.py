"""What the commands share: argument parsing for the small ``key=value`` commands (report, export,
feedback, resume), bad input as one line on stderr with exit code 2, and the exit codes themselves:

* 0: done; 1: an unexpected internal error (a traceback, a bug to report);
* 2: bad input (unknown task, bad setting or argument, missing key, unreadable run directory);
* 3: the search ran but no candidate trained (every one was rejected or failed; the run directory
  says why for each);
* 130: interrupted (Ctrl-C); everything so far is in the run directory.
"""

from __future__ import annotations

import sys
from typing import Callable

from rewardsmith.errors import UserError
from rewardsmith.records import Summary

EXIT_USAGE = 2
EXIT_NOTHING_TRAINED = 3
EXIT_INTERRUPTED = 130


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
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


def summary_exit_code(prog: str, summary: dict | Summary, run_dir) -> int:
    """0 when the search trained a candidate; otherwise one line on stderr and EXIT_NOTHING_TRAINED.
    ``summary``: the record, or the JSON ``run``/``resume`` return."""
    if isinstance(summary, dict):
        summary = Summary.from_json(summary)
    if summary.trained_any:
        return 0
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.candidates.items()))
    print(f"{prog}: error: no candidate trained ({counts or 'no candidates'}); each candidate's reason is in "
          f"{run_dir}", file=sys.stderr)
    return EXIT_NOTHING_TRAINED
