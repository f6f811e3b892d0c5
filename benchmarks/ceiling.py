"""The machine's limits each framework is measured against: float32 GEMM through each engine, and prepare's rate."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up (and compilation)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


GPU_GEMM_N = 8192  # a GPU reaches its peak only on large matrices (at 2048 an H200 gives a tenth of it)


def engine_gemm_gflops(engine: str, n: int, repeats: int) -> tuple[float, dict]:
    """float32 n x n matrix multiply through `engine`'s own kernels, on the device it trains on; best of `repeats`.

    Measured in the framework's child process, after its runtime has set the thread pools training uses, so that a
    GPU machine without TensorFlow measures its own ceiling too. Each engine keeps its default float32 precision,
    the one training uses; on NVIDIA GPUs that may be TF32, recorded as `float32_precision`. The probe itself is
    the engine runtime's `gemm_probe`.
    """
    from dlcompare.frameworks import runtime

    settings_used = runtime(engine).configure(0, 0)
    run, n, gpus, precision = runtime(engine).gemm_probe(n, GPU_GEMM_N)
    seconds = _best_seconds(run, repeats)
    return 2 * n**3 / seconds / 1e9, {**settings_used, "gpu_names": gpus, "gemm_n": n, "float32_precision": precision}


def prepare_rate(source: Path, params, repeats: int, out: Path) -> float:
    from dlcompare.prepare import prepare

    rates = []
    for attempt in range(repeats):
        target = out / "prepared" if attempt == repeats - 1 else out / f"scratch{attempt}"
        rates.append(prepare(source, target, out / "data.json", params.prepare)["images_per_s"])
    return statistics.median(rates)
