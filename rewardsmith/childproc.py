"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import os
import signal
from typing import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: the kernel kills the child when the process that started it ends, however
    it ends (SIGKILL and crashes included); a sandboxed worker's children die with it (its PID
    namespace ends with its first process). prctl is looked up here, in the parent: between fork and
    exec the child only calls it."""
    parent = os.getpid()
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None  # not Linux: children still end at the end of their input

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent already died between fork and prctl
            os._exit(1)
        if then is not None:
            then()
    return preexec
