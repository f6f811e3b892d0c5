"""PyTorch's runtime settings, for every framework that runs on torch (plain PyTorch, Keras on torch).

Deterministic algorithms with a fixed thread count make CPU training bitwise
reproducible; the GPU needs CUBLAS_WORKSPACE_CONFIG for the same guarantee.
"""

from __future__ import annotations

import os
import random

import numpy as np

JIT_COMPILE = False  # torch.compile: README, "what was tried"


def before_import(threads: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def configure(threads: int, seed: int) -> dict:
    """Threads, seeds and deterministic algorithms; 0 threads = one per available core."""
    import torch

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads or cores)
    try:
        torch.set_num_interop_threads(threads or cores)
    except RuntimeError:  # only settable before the first parallel op; a second configure keeps the first value
        pass
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return {
        "intra_op": torch.get_num_threads(),
        "inter_op": torch.get_num_interop_threads(),
        "gpus": torch.cuda.device_count(),
        "deterministic": 1,
    }


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
