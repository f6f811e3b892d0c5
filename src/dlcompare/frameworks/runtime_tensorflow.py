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

DISPLAY_NAME = "TensorFlow"  # in the report and the benchmarks
JIT_COMPILE = False  # XLA: see above


def before_import(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ start-up chatter; real errors still raise in Python


def set_precision(precision: str) -> None:
    """train.precision: TensorFloat-32 for float32 matrix products and convolutions on NVIDIA GPUs is TensorFlow's
    default (tf.config.experimental.enable_tensor_float_32_execution); "float32" turns it off."""
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")


def precision_in_force() -> str:
    import tensorflow as tf

    return f"TF32 {'on' if tf.config.experimental.tensor_float_32_execution_enabled() else 'off'}"


def peak_device_mb() -> float | None:
    """The most memory TensorFlow's allocator used on the first GPU; None without one."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


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
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # TensorFlow would otherwise take most of each GPU at its first op, and no other run could share it
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the devices are initialised already (a second configure in this process): set then
            pass
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads() or cores,
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or cores,
        "gpus": len(gpus),
        "deterministic": 1,
        "precision": precision_in_force(),
    }


# ---------------------------------------------------------------- probes for benchmarks/ (bench.py, layers.py)

def gemm_probe(n: int, gpu_n: int):
    """A float32 n x n matrix product on the device training uses, as (run, n, GPU names, float32 precision).

    `run` waits for the result. On a GPU n grows to gpu_n (a GPU reaches its peak only on large matrices).
    """
    import tensorflow as tf

    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    n = max(n, gpu_n) if gpus else n
    a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    return (lambda: matmul(a, b).numpy()), n, gpus, precision_in_force()


def convolution_timers(spec, batch: int) -> dict:
    """conv name -> (forward, forward + backward) callables, padded as tensorflow_fw pads.

    Backward is what training computes: the kernel's gradient and, after the first layer, the input's.
    """
    import tensorflow as tf

    timers = {}
    for index, c in enumerate(spec.convs()):
        # "SAME" at stride 1 (its fast path), explicit where "SAME" would pad one side only.
        k, p = c.kernel_size, "SAME" if c.stride == 1 else [[0, 0], [c.padding, c.padding], [c.padding, c.padding], [0, 0]]
        x, w = tf.random.uniform((batch, c.input_size, c.input_size, c.in_channels)), tf.random.uniform((k, k, c.in_channels, c.out_channels))
        g = tf.random.uniform((batch, c.output_size, c.output_size, c.out_channels))
        forward = tf.function(lambda x=x, w=w, c=c, p=p: tf.nn.conv2d(x, w, c.stride, p))

        @tf.function
        def train(x=x, w=w, g=g, first=index == 0, c=c, p=p):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = tf.nn.conv2d(x, w, c.stride, p)
            return tape.gradient(y, [w] if first else [w, x], output_gradients=g)

        timers[c.name] = (forward, train)
    return timers
