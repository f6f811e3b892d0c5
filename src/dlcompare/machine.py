"""The machine a run or a measurement is on: its usable cores and a description that survives off Linux."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
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


def gpus() -> str:
    """The NVIDIA GPUs this process may use, as "name (driver version)"; "none" without any (or without nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "none"
    try:
        listed = subprocess.run([smi, "--query-gpu=index,name,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # what Ray (`cluster run --gpus-per-cell`) gives a cell
    found = []
    for line in listed.strip().splitlines():
        index, name, driver = (part.strip() for part in line.split(",", 2))
        if visible is None or index in visible.split(","):
            found.append(f"{name} (driver {driver})")
    return "; ".join(found) or "none"


def machine() -> dict:
    """What a run or a measurement ran on: speed samples from different machines are never pooled.

    The host is its name hashed, or DLCOMPARE_HOST where host names do not tell machines apart (containers that
    share one, or a test that plays a second machine).
    """
    host = os.environ.get("DLCOMPARE_HOST") or hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]
    return {"host": host, "cpu": cpu_model(), "cores": available_cores(), "gpus": gpus()}
