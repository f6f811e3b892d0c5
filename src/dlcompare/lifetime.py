"""A child process that must not outlive its parent (Linux; elsewhere a no-op)."""

from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `signum` to this process when its parent dies (kill -9 included)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's own shutdown is all there is
    if os.getppid() == 1:  # the parent died before the line above ran
        os.kill(os.getpid(), signum)
