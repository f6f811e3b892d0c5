"""JAX's runtime settings, for every framework that runs on JAX (plain JAX, Keras on JAX).

XLA reads its thread pool size from the environment when JAX starts, so the
setting has to be made before `import jax`. On the CPU, XLA's multi-threaded
kernels are not bitwise run-to-run deterministic (jax-ml/jax#39741); with
one thread they are, and the metrics record which case a run was.
"""

from __future__ import annotations

import os
import random

import numpy as np
from dlcompare.machine import available_cores

JIT_COMPILE = True  # JAX is XLA; Keras on JAX without jit would run op by op


def _threads(threads: int) -> int:
    return threads or available_cores()


def before_import(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # XLA's C++ logging shares TensorFlow's switch
    if threads:
        flags = os.environ.get("XLA_FLAGS", "")
        extra = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
        os.environ["XLA_FLAGS"] = f"{flags} {extra}".strip()


def configure(threads: int, seed: int) -> dict:
    import jax

    random.seed(seed)
    np.random.seed(seed)
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    return {
        "intra_op": _threads(threads),
        "inter_op": 1,
        "gpus": len(gpus),
        "deterministic": int(_threads(threads) == 1 and not gpus),
    }
