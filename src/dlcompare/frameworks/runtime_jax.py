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

DISPLAY_NAME = "JAX (XLA)"  # in the report and the benchmarks
JIT_COMPILE = True  # JAX is XLA; Keras on JAX without jit would run op by op


def _threads(threads: int) -> int:
    return threads or available_cores()


def before_import(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # XLA's C++ logging shares TensorFlow's switch
    # JAX takes 75 % of a GPU's memory at start-up by default; allocating on demand lets runs and tests share one.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if threads:
        flags = os.environ.get("XLA_FLAGS", "")
        extra = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
        os.environ["XLA_FLAGS"] = f"{flags} {extra}".strip()


# train.precision -> jax_default_matmul_precision, which XLA applies to float32 dots and convolutions without a
# precision of their own (every one here). Unset, NVIDIA GPUs compute them in TF32 (JAX's "Default numerical
# precision" in its GPU performance tips).
MATMUL_PRECISION = {"float32": "float32", "tf32": "tensorfloat32"}


def set_precision(precision: str) -> None:
    import jax

    jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION[precision])


def precision_in_force() -> str:
    import jax

    return f"jax_default_matmul_precision {jax.config.jax_default_matmul_precision or 'unset (TF32 on NVIDIA GPUs)'}"


def peak_device_mb() -> float | None:
    """The most memory XLA's allocator used on the first GPU; None without one."""
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    return gpus[0].memory_stats()["peak_bytes_in_use"] / 2**20 if gpus else None


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
        "precision": precision_in_force(),
    }


# ---------------------------------------------------------------- probes for benchmarks/ (bench.py, layers.py)

def gemm_probe(n: int, gpu_n: int):
    """A float32 n x n matrix product on the device training uses, as (run, n, GPU names, float32 precision).

    `run` waits for the result. On a GPU n grows to gpu_n (a GPU reaches its peak only on large matrices).
    """
    import jax
    import jax.numpy as jnp

    gpus = [str(d) for d in jax.devices() if d.platform != "cpu"]
    n = max(n, gpu_n) if gpus else n
    a = jax.random.uniform(jax.random.key(0), (n, n))
    b = jax.random.uniform(jax.random.key(1), (n, n))
    matmul = jax.jit(lambda x, y: jnp.sum(x @ y))
    return (lambda: float(matmul(a, b))), n, gpus, precision_in_force()


def convolution_timers(spec, batch: int) -> dict:
    """conv name -> (forward, forward + backward) callables: jax_fw's own conv, jitted alone.

    Backward is what training computes: the kernel's gradient and, after the first layer, the input's.
    """
    from functools import partial

    import jax

    from dlcompare.frameworks.jax_fw import conv

    timers, keys = {}, iter(jax.random.split(jax.random.key(0), 3 * len(spec.convs())))
    for index, c in enumerate(spec.convs()):
        k, unit = c.kernel_size, partial(conv, c=c)
        x = jax.random.uniform(next(keys), (batch, c.input_size, c.input_size, c.in_channels))
        w = jax.random.uniform(next(keys), (k, k, c.in_channels, c.out_channels))
        g = jax.random.uniform(next(keys), (batch, c.output_size, c.output_size, c.out_channels))
        forward = jax.jit(unit)
        if index:
            train = jax.jit(lambda x, w, g, unit=unit: jax.vjp(unit, x, w)[1](g))
        else:
            train = jax.jit(lambda x, w, g, unit=unit: jax.vjp(lambda w: unit(x, w), w)[1](g))
        timers[c.name] = (lambda f=forward, x=x, w=w: jax.block_until_ready(f(x, w)),
                          lambda f=train, x=x, w=w, g=g: jax.block_until_ready(f(x, w, g)))
    return timers
