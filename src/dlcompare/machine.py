"""The machine a run or a measurement is on: its usable cores and a description that survives off Linux."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from pathlib import Path


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, e.g. under taskset or a container)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo on Linux, else what the platform module knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
    """What a measurement ran on (the host name hashed): speed samples from different machines are never pooled."""
    return {"host": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12], "cpu": cpu_model(),
            "cores": available_cores()}
