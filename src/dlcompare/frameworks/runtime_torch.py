"""PyTorch's runtime settings, for every framework that runs on torch (plain PyTorch, Keras on torch).

Deterministic algorithms with a fixed thread count make CPU training bitwise
reproducible; the GPU needs CUBLAS_WORKSPACE_CONFIG for the same guarantee.
"""

from __future__ import annotations

import ctypes
import os
import random

import numpy as np

from dlcompare.machine import available_cores

DISPLAY_NAME = "PyTorch"  # in the report and the benchmarks
JIT_COMPILE = False  # torch.compile: docs/performance.md


def before_import(threads: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    keep_freed_memory()


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed blocks for reuse, as the caching allocators PyTorch recommends on CPUs do.

    PyTorch's CPU tensors come straight from malloc, and glibc hands blocks over
    32 MB (at batch 64 the first layer's activations and their gradients are
    33.5 MB each) out as fresh kernel mappings and unmaps them on free, so every
    step page-faults and zeroes them again: 40 % of the training step on the
    2-core CPU (docs/performance.md). PyTorch's CPU tuning guide answers this by
    preloading jemalloc or tcmalloc; `mallopt` gets the same reuse from glibc:
    no mmap for large blocks, the heap trimmed only past 1 GiB free, and one
    arena (per-thread arenas each kept their own freed blocks: +240 MB of peak
    for no measurable speed). TensorFlow and XLA have allocators of their own
    and were not faster with it.
    """
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)  # glibc's; absent on macOS, where this does nothing
    if mallopt is not None:
        m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
        mallopt(m_trim_threshold, 1 << 30)
        mallopt(m_mmap_max, 0)
        mallopt(m_arena_max, 1)


# train.precision -> torch's fp32_precision of CUDA matrix products and cuDNN convolutions (its defaults differ: IEEE
# products but TF32 convolutions; PyTorch's notes "TensorFloat-32 (TF32) on Ampere (and later) devices"). The CPU's
# oneDNN kernels keep their own setting, IEEE float32.
FP32_PRECISION = {"float32": "ieee", "tf32": "tf32"}


def set_precision(precision: str) -> None:
    import torch

    torch.backends.cuda.matmul.fp32_precision = FP32_PRECISION[precision]
    torch.backends.cudnn.conv.fp32_precision = FP32_PRECISION[precision]


def precision_in_force() -> str:
    import torch

    return f"CUDA matmul {torch.backends.cuda.matmul.fp32_precision}, cuDNN conv {torch.backends.cudnn.conv.fp32_precision}"


def peak_device_mb() -> float | None:
    """The most GPU memory PyTorch's caching allocator held (what no other process could use); None without a GPU."""
    import torch

    return torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else None


def configure(threads: int, seed: int) -> dict:
    """Threads, seeds and deterministic algorithms; 0 threads = one per available core."""
    import torch

    cores = available_cores()
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
        "precision": precision_in_force(),
    }


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------- probes for benchmarks/ (bench.py, layers.py)

def gemm_probe(n: int, gpu_n: int):
    """A float32 n x n matrix product on the device training uses, as (run, n, GPU names, float32 precision).

    `run` waits for the result. On a GPU n grows to gpu_n (a GPU reaches its peak only on large matrices).
    """
    import torch

    where = device()
    gpus = [torch.cuda.get_device_name()] if where.type == "cuda" else []
    n = max(n, gpu_n) if gpus else n
    a, b = torch.rand(n, n, device=where), torch.rand(n, n, device=where)
    return (lambda: float((a @ b).sum())), n, gpus, precision_in_force()


def convolution_timers(spec, batch: int) -> dict:
    """conv name -> (forward, forward + backward) callables, in the channels_last layout pytorch_fw trains in.

    Backward is what training computes: the kernel's gradient and, after the first layer, the input's.
    """
    import torch
    import torch.nn.functional as F

    where = device()
    sync = torch.cuda.synchronize if where.type == "cuda" else (lambda: None)
    timers = {}
    for index, c in enumerate(spec.convs()):
        def tensor(*shape):
            return torch.rand(*shape, device=where).to(memory_format=torch.channels_last)

        k, size = c.kernel_size, c.input_size
        x, w = tensor(batch, c.in_channels, size, size), tensor(c.out_channels, c.in_channels, k, k)
        g = tensor(batch, c.out_channels, c.output_size, c.output_size)
        wrt = [w.requires_grad_()] + ([x.requires_grad_()] if index else [])

        def forward(x=x, w=w, c=c):
            with torch.no_grad():
                F.conv2d(x, w, stride=c.stride, padding=c.padding)
            sync()

        def train(x=x, w=w, g=g, wrt=wrt, c=c):
            torch.autograd.grad(F.conv2d(x, w, stride=c.stride, padding=c.padding), wrt, g)
            sync()

        timers[c.name] = (forward, train)
    return timers
