"""TensorFlow's runtime settings, for every framework that runs on TensorFlow (raw TF, Keras on TF).

Applied before TensorFlow runs its first op and recorded in the run's metrics.
XLA (`jit_compile`) stays off: on this CPU it made the first epoch twice as
long and no later epoch faster, and it has no deterministic max-pool gradient.
"""

from __future__ import annotations

import os
import random

import numpy as np

from dlcompare.frameworks import native_stderr_hidden
from dlcompare.machine import available_cores

JIT_COMPILE = False  # XLA: see above


def before_import(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ start-up chatter; real errors still raise in Python


def configure(threads: int, seed: int) -> dict:
    """Threads, seeds and op determinism; 0 threads = TensorFlow's default (all cores)."""
    import tensorflow as tf

    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.config.experimental.enable_op_determinism()
    cores = available_cores()
    with native_stderr_hidden():  # the first device query logs a failed cuInit on machines without a GPU
        gpus = len(tf.config.list_physical_devices("GPU"))
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads() or cores,
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or cores,
        "gpus": gpus,
        "deterministic": 1,
    }
