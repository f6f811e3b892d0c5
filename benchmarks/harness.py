"""One framework in its own process: dlcompare's training loop against the bare step, at each model scale, its
inference and its peak memory over a full-size dataset (bench.py's children)."""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ceiling import engine_gemm_gflops
from common import SCALES, at_scale, epoch_rates, settings


def _rate_range(seconds: list[float], images: int) -> list[float]:
    """[slowest, fastest] images/s over the steady epochs: the spread around `epoch_rates`' median."""
    from dlcompare.train import steady_epochs

    steady = steady_epochs(seconds)
    return [images / max(steady), images / min(steady)]


def bare_steps(implementation, x, y, batch_size, epochs) -> list[float]:
    """The framework's one-step function (the equivalence tests' adapter) over batches made in advance."""
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x) - batch_size + 1, batch_size)]
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        for images, labels in batches:
            implementation.train_batch(images, labels, 1e-3)
        implementation.weights()  # waits for frameworks that dispatch asynchronously (JAX)
        times.append(time.perf_counter() - started)
    return times


def own_loop_seconds(implementation, x, y, x_val, y_val) -> tuple[list[float], int]:
    """Training seconds of each epoch of the framework's own loop (`fit`), and the images per epoch."""
    from dlcompare.batches import TrainBatches
    from dlcompare.frameworks.base import TrainingSession

    train = implementation.train
    batches = TrainBatches(x, y, train.batch_size, seed=0, flip=train.augment.flip, shift=train.augment.shift)
    with tempfile.TemporaryDirectory() as checkpoints:
        session = TrainingSession(train=train, seed=0, batches=batches, val_x=x_val[:256], val_y=y_val[:256],
                                  checkpoint_dir=Path(checkpoints))
        implementation.fit(session)
    return [session.history[e]["train_seconds"] for e in range(train.epochs)], batches.steps * batches.batch_size


def scale_figures(module, params, sizes: dict, scale: str, train_data, val_data) -> dict:
    """Training images/s of the framework's own loop on one of SCALES' models, with as many FLOPs per epoch as
    the plain CNN's measurement (fewer images for a costlier model, at least four batches)."""
    from dlcompare import architectures

    plain = architectures.from_params(at_scale(params, "plain_cnn"))
    params = at_scale(params, *SCALES[scale])
    spec, batch = architectures.from_params(params), params.train.batch_size
    count = max(4 * batch, sizes["train_images"] * plain.flops_per_image() // spec.flops_per_image() // batch * batch)
    implementation = module.Implementation(spec, params.train.model_copy(update={"epochs": sizes["scale_epochs"]}), seed=0)
    implementation.build(spec.initial_weights(0))
    (x, y), (x_val, y_val) = train_data, val_data
    seconds, images = own_loop_seconds(implementation, x[:count], y[:count], x_val, y_val)
    return scale_record(spec, seconds, images, sizes["scale_epochs"] - 1)


def scale_record(spec, seconds: list[float], images: int, epochs_timed: int) -> dict:
    rate, _ = epoch_rates(seconds, images)
    return {"images_per_s": rate, "images_per_s_range": _rate_range(seconds, images), "images": images,
            "gflops": 3 * spec.flops_per_image() * rate / 1e9, "flops_per_image": spec.flops_per_image(),
            "params": spec.parameter_count(), "epochs_timed": epochs_timed}


def child_framework(framework: str, prepared: Path, quick: bool) -> dict:
    """Training, bare-loop and inference figures of one framework, and its engine's GEMM ceiling."""
    from dlcompare import frameworks, architectures
    from dlcompare.batches import EvalBatches, to_float
    from dlcompare.evaluate import latency_ms
    from dlcompare.prepared import load_split

    params, sizes = settings(quick, [framework])
    spec = architectures.from_params(params)
    train = params.train.model_copy(update={"epochs": sizes["epochs"]})
    x, y = load_split(prepared, "train")
    x, y = x[: sizes["train_images"]], y[: sizes["train_images"]]
    x_val, y_val = load_split(prepared, "val")
    module = frameworks.load(framework, precision=train.precision)
    engine = frameworks.REGISTRY[framework].runtime
    gemm, engine_settings = engine_gemm_gflops(engine, sizes["gemm_n"], sizes["gemm_repeats"])

    implementation = module.Implementation(spec, train, seed=0)
    implementation.build(spec.initial_weights(0))
    harness_seconds, images = own_loop_seconds(implementation, x, y, x_val, y_val)
    ours, first_overhead = epoch_rates(harness_seconds, images)

    bare = module.Implementation(spec, train, seed=0)
    bare.build(spec.initial_weights(0))
    x_float = to_float(x[:images])
    y_float = y[:images].astype(np.float32)[:, None]
    bare_seconds = bare_steps(bare, x_float, y_float, train.batch_size, train.epochs)
    bare_rate, _ = epoch_rates(bare_seconds, images)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training's (Keras' saving imports TensorFlow)
    peak_device_mb = frameworks.runtime(engine).peak_device_mb()  # None on a CPU

    with tempfile.TemporaryDirectory() as scratch:
        implementation.save(Path(scratch) / "model")
        predict = module.load_predictor(Path(scratch) / "model")
        x_test, _ = load_split(prepared, "test")
        eval_batches = EvalBatches(x_test, None, params.evaluate.batch_size)
        predict(eval_batches.batch(0))
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            for images_batch in eval_batches:
                predict(images_batch)
            rates.append(len(x_test) / (time.perf_counter() - started))
        latencies = latency_ms(predict, to_float(x_test[:1]), sizes["latency_runs"])
        p50, p95 = statistics.median(latencies), float(np.percentile(latencies, 95))

    # The same framework at the other scales, after the figures above (the peak memory is training's at the first).
    scales = {}
    for scale, model in SCALES.items():
        if model == (spec.preset, 1):
            scales[scale] = scale_record(spec, harness_seconds, images, train.epochs - 1)
        else:
            scales[scale] = scale_figures(module, params, sizes, scale, load_split(prepared, "train"), (x_val, y_val))
    flops = spec.flops_per_image()
    return {
        "scales": scales,
        "engine": {"name": engine, "gemm_gflops": gemm, **engine_settings},
        "train": {
            "images_per_s": ours, "bare_images_per_s": bare_rate, "first_epoch_overhead_s": first_overhead,
            "images_per_s_range": _rate_range(harness_seconds, images), "bare_images_per_s_range": _rate_range(bare_seconds, images),
            "peak_rss_mb": peak_rss_mb, "peak_device_mb": peak_device_mb, "precision": train.precision,
            "gflops": 3 * flops * ours / 1e9, "flops_per_image": flops, "epochs_timed": train.epochs - 1,
        },
        "inference": {"latency_ms_p50": p50, "latency_ms_p95": p95, "images_per_s": statistics.median(rates),
                      "batch_size": params.evaluate.batch_size},
    }


def child_memory(framework: str, prepared: Path, quick: bool) -> dict:
    """Peak memory of one training epoch over a full-size dataset, memory-mapped as `train` reads it."""
    from dlcompare import frameworks, architectures
    from dlcompare.batches import TrainBatches
    from dlcompare.frameworks.base import TrainingSession
    from dlcompare.prepared import load_split

    params, sizes = settings(quick, [framework])
    spec = architectures.from_params(params)
    train = params.train.model_copy(update={"epochs": 1})
    real, labels = load_split(prepared, "train")
    n, size = sizes["full_dataset"], params.prepare.image_size
    with tempfile.TemporaryDirectory() as scratch:
        # As large as the full download's training split would be, filled by repeating the real photos.
        big = np.lib.format.open_memmap(Path(scratch) / "x.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        for start in range(0, n, len(real)):
            big[start : start + len(real)] = real[: n - start]
        big.flush()
        del big
        x = np.load(Path(scratch) / "x.npy", mmap_mode="r")
        y = np.resize(labels, n)
        implementation = frameworks.load(framework, precision=train.precision).Implementation(spec, train, seed=0)
        implementation.build(spec.initial_weights(0))
        x_val, y_val = load_split(prepared, "val")
        session = TrainingSession(train=train, seed=0, batches=TrainBatches(x, y, train.batch_size, seed=0),
                                  val_x=x_val, val_y=y_val, checkpoint_dir=Path(scratch))
        implementation.fit(session)
    return {"images": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
