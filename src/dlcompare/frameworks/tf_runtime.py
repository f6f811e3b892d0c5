"""Runtime settings shared by every TensorFlow-based framework (Keras on TF, raw TF).

They must be applied before TensorFlow runs its first op, and identically for
every framework, so the comparison measures the code and not the settings.
"""

from __future__ import annotations

import os
import random

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ start-up chatter; real errors still raise in Python

import tensorflow as tf  # noqa: E402


def configure(threads: int, seed: int, deterministic: bool = True) -> dict:
    """Threads, seeds and op determinism; returns the settings for the metrics file (0 threads = TensorFlow's default, all cores)."""
    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    if deterministic:  # XLA has no deterministic max-pool gradient, so jit_compile runs without it
        tf.config.experimental.enable_op_determinism()
    cores = len(os.sched_getaffinity(0))
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads() or cores,
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or cores,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "deterministic": int(deterministic),
    }
