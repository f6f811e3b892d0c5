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
    precision = f"jax_default_matmul_precision {jax.config.jax_default_matmul_precision or 'unset (TF32 on NVIDIA GPUs)'}"
    return (lambda: float(matmul(a, b))), n, gpus, precision


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
