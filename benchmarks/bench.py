"""dlcompare's speed against this machine's own limits: `make bench`.

Measures, on this machine and in this run:
  gemm_gflops      float32 matrix multiply through each measured framework's engine (TensorFlow, PyTorch, JAX),
                   on the device it trains on, best of several; the fastest engine's figure is the ceiling
  prepare          images/s of `dlcompare prepare` on the shared 10k Kaggle zip, end to end
  train.<fw>       steady-state images/s of dlcompare's training loop, the GFLOP/s that is, its share of
                   gemm_gflops, first-epoch overhead, peak memory, and the overhead of dlcompare's harness
                   against the bare step loop (the framework's one-step function over batches made in
                   advance: no augmentation, validation, logging or checkpoints); peak memory of one epoch over a full-size (25,000 image)
                   memory-mapped dataset
  tutorials        the pipeline a user of each framework would start from, on shared images re-encoded at
                   500x375 like the original downloads: keras-io "Image classification from scratch"
                   (image_dataset_from_directory, augmentation layers in a tf.data map, prefetch, fit) on the
                   Keras backend each Keras framework runs on, and on TensorFlow for tensorflow; PyTorch's
                   ImageFolder + DataLoader feeding the framework's own step for pytorch and jax (JAX's documentation trains with PyTorch data loading)
  scales.<model>.<fw>  training images/s of the framework's own loop on the plain CNN, the residual network and
                   the residual network four times as wide, and the order of the frameworks at each scale
  inference.<fw>   latency of one image (p50, p95) and batched images/s
  time_to_accuracy.<fw>  not trained here (that takes the whole recipe): copied from the pipeline's last
                   `compare` (reports/comparison.json), the median over its seeds of the training seconds until
                   validation accuracy first reached 0.80, 0.85 and 0.88; null for a framework it did not run

Each framework runs in its own process, so memory figures are its own. Every figure is a median over
repeated measurements after a warm-up; the table says how many. `--quick` uses tiny sizes (for tests).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np

from dlcompare.frameworks import NAMES
from dlcompare.machine import available_cores, cpu_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_ZIP = ROOT.parent / "shared" / "datasets" / "dogs-vs-cats-train-10k.zip"
FRAMEWORKS = NAMES
FULL_DATASET = 25_000


def settings(quick: bool, frameworks: list[str]):
    """Params for the run (the project's defaults, or tiny ones for --quick) and the benchmark's sizes.

    Only the measured frameworks need to be installed (a GPU machine may have PyTorch and JAX alone).
    """
    from dlcompare.params import load_params

    params = load_params(ROOT / "params.yaml", frameworks)
    if not quick:
        return params, {"train_images": 2048, "epochs": 6, "scale_epochs": 6, "prepare_repeats": 3, "gemm_n": 2048, "gemm_repeats": 5,
                        "latency_runs": 50, "tutorial_images": 2048, "full_dataset": FULL_DATASET}
    params = params.model_copy(update={
        "prepare": params.prepare.model_copy(update={"image_size": 32}),
        "model": params.model.model_copy(update={
            "plain_cnn": params.model.plain_cnn.model_copy(update={"filters": [8, 16]}),
            "resnet": params.model.resnet.model_copy(update={"stem_width": 8, "widths": [8, 16], "blocks_per_stage": 1})}),
        "train": params.train.model_copy(update={"batch_size": 16}),
    })
    return params, {"train_images": 128, "epochs": 3, "scale_epochs": 2, "prepare_repeats": 1, "gemm_n": 256, "gemm_repeats": 2,
                    "latency_runs": 5, "tutorial_images": 64, "full_dataset": 512}


# The ranking at two model scales: the plain CNN, and the residual network at its widths and at four times them.
SCALES = {"plain_cnn": ("plain_cnn", 1), "resnet": ("resnet", 1), "resnet x4": ("resnet", 4)}


def at_scale(params, preset: str, width: int = 1):
    """params with model.preset = `preset`, the residual network's widths (stem included) times `width`."""
    model = params.model.model_copy(update={"preset": preset})
    if width != 1:
        resnet = model.resnet
        model = model.model_copy(update={"resnet": resnet.model_copy(update={
            "stem_width": resnet.stem_width * width, "widths": [w * width for w in resnet.widths]})})
    return params.model_copy(update={"model": model})


# ---------------------------------------------------------------- measured in the parent process

def machine() -> dict:
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        memory_gb = None
    versions = {}
    for name in ("tensorflow", "keras", "torch", "jax", "numpy", "pillow", "dvc"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_model(), "cores": available_cores(), "memory_gb": memory_gb,
            "python": platform.python_version(), "versions": versions}


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
    the one training uses; on NVIDIA GPUs that may be TF32, recorded as `float32_precision`.
    """
    from dlcompare.frameworks import runtime

    settings_used = runtime(engine).configure(0, 0)
    if engine == "tensorflow":
        import tensorflow as tf

        devices = [device.name for device in tf.config.list_physical_devices("GPU")]
        n = max(n, GPU_GEMM_N) if devices else n
        a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
        seconds = _best_seconds(lambda: matmul(a, b).numpy(), repeats)
        precision = f"TF32 {'allowed' if tf.config.experimental.tensor_float_32_execution_enabled() else 'off'}"
    elif engine == "torch":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        devices = [torch.cuda.get_device_name()] if device == "cuda" else []
        n = max(n, GPU_GEMM_N) if devices else n
        a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
        seconds = _best_seconds(lambda: float((a @ b).sum()), repeats)
        precision = (f"matmul {torch.get_float32_matmul_precision()} ('highest' is float32), cuDNN convolutions TF32 "
                     f"{'allowed' if torch.backends.cudnn.allow_tf32 else 'off'}")
    else:
        import jax
        import jax.numpy as jnp

        devices = [str(d) for d in jax.devices() if d.platform != "cpu"]
        n = max(n, GPU_GEMM_N) if devices else n
        a = jax.random.uniform(jax.random.key(0), (n, n))
        b = jax.random.uniform(jax.random.key(1), (n, n))
        matmul = jax.jit(lambda x, y: jnp.sum(x @ y))
        seconds = _best_seconds(lambda: float(matmul(a, b)), repeats)
        precision = f"jax_default_matmul_precision {jax.config.jax_default_matmul_precision or 'unset (TF32 on NVIDIA GPUs)'}"
    return 2 * n**3 / seconds / 1e9, {**settings_used, "gpu_names": devices, "gemm_n": n, "float32_precision": precision}


def prepare_rate(source: Path, params, repeats: int, out: Path) -> float:
    from dlcompare.prepare import prepare

    rates = []
    for attempt in range(repeats):
        target = out / "prepared" if attempt == repeats - 1 else out / f"scratch{attempt}"
        rates.append(prepare(source, target, out / "data.json", params.prepare)["images_per_s"])
    return statistics.median(rates)


# ---------------------------------------------------------------- one framework, in a child process

def _epoch_rates(seconds: list[float], images: int) -> tuple[float, float]:
    """(steady-state images/s = images / median of the steady epochs, first-epoch overhead in s)."""
    from dlcompare.train import steady_epochs  # the pipeline's rule, so bench and train metrics agree

    steady = statistics.median(steady_epochs(seconds))
    return images / steady, seconds[0] - steady


def _rate_range(seconds: list[float], images: int) -> list[float]:
    """[slowest, fastest] images/s over the steady epochs: the spread around `_epoch_rates`' median."""
    from dlcompare.train import steady_epochs

    steady = steady_epochs(seconds)
    return [images / max(steady), images / min(steady)]


def _epoch_timer(times: list):
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    return Timer()


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
    rate, _ = _epoch_rates(seconds, images)
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
    module = frameworks.load(framework)
    engine = frameworks.REGISTRY[framework].runtime
    gemm, engine_settings = engine_gemm_gflops(engine, sizes["gemm_n"], sizes["gemm_repeats"])

    implementation = module.Implementation(spec, train, seed=0)
    implementation.build(spec.initial_weights(0))
    harness_seconds, images = own_loop_seconds(implementation, x, y, x_val, y_val)
    ours, first_overhead = _epoch_rates(harness_seconds, images)

    bare = module.Implementation(spec, train, seed=0)
    bare.build(spec.initial_weights(0))
    x_float = to_float(x[:images])
    y_float = y[:images].astype(np.float32)[:, None]
    bare_seconds = bare_steps(bare, x_float, y_float, train.batch_size, train.epochs)
    bare_rate, _ = _epoch_rates(bare_seconds, images)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training's (Keras' saving imports TensorFlow)

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
            "peak_rss_mb": peak_rss_mb,
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
        implementation = frameworks.load(framework).Implementation(spec, train, seed=0)
        implementation.build(spec.initial_weights(0))
        x_val, y_val = load_split(prepared, "val")
        session = TrainingSession(train=train, seed=0, batches=TrainBatches(x, y, train.batch_size, seed=0),
                                  val_x=x_val, val_y=y_val, checkpoint_dir=Path(scratch))
        implementation.fit(session)
    return {"images": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _tutorial_jpegs(source: Path, folder: Path, count: int) -> int:
    """<folder>/<class>/<name>.jpg at the original downloads' size: the shared 200x200 copies re-encoded at 500x375."""
    from PIL import Image

    with zipfile.ZipFile(source) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        chosen = [n for n in names if n.split("/")[-1].startswith("cat.")][: count // 2] + \
                 [n for n in names if n.split("/")[-1].startswith("dog.")][: count // 2]
        for name in chosen:
            label, file = name.split("/")[-1].split(".")[0], name.split("/")[-1]
            (folder / label).mkdir(exist_ok=True)
            Image.open(io.BytesIO(archive.read(name))).convert("RGB").resize((500, 375)).save(folder / label / file, quality=90)
    return len(chosen)


JPEG_SIZE = "500x375, re-encoded from the shared 200x200 images"


def child_tutorial(framework: str, source: Path, quick: bool) -> dict:
    """The keras-io "Image classification from scratch" pipeline, on JPEG files of the original size, on the
    Keras backend `framework` runs on (tensorflow's users would start from the same page, on TensorFlow)."""
    from dlcompare import frameworks, architectures

    params, sizes = settings(quick, [framework])
    frameworks.load(framework, params.train.threads)  # sets KERAS_BACKEND before Keras is imported
    frameworks.runtime(frameworks.REGISTRY[framework].runtime).configure(params.train.threads, 0)
    import keras
    import tensorflow as tf  # image_dataset_from_directory returns a tf.data pipeline on every backend

    from dlcompare.frameworks.keras_fw import build_model

    size = params.prepare.image_size
    with tempfile.TemporaryDirectory() as folder:
        count = _tutorial_jpegs(source, Path(folder), sizes["tutorial_images"])
        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=params.train.batch_size, label_mode="binary", seed=0,
            verbose=False)
        shift = params.train.augment.shift
        # As keras-io does: each augmentation layer called in the tf.data map (a Sequential there works on
        # TensorFlow only; a single preprocessing layer switches to TensorFlow inside tf.data on every backend).
        augmentation = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomTranslation(shift, shift)]

        def augment(images):
            for layer in augmentation:
                images = layer(images)
            return images

        dataset = dataset.map(lambda x, y: (augment(x) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        model = build_model(architectures.from_params(params))
        model.compile(optimizer=keras.optimizers.Adam(params.train.learning_rate), loss="binary_crossentropy",
                      metrics=["accuracy"])
        times: list[float] = []
        model.fit(dataset, epochs=sizes["epochs"], verbose=0, callbacks=[_epoch_timer(times)])
    rate, _ = _epoch_rates(times, count)
    return {"tutorial_images_per_s": rate, "images": count, "jpeg_size": JPEG_SIZE,
            "pipeline": f"keras-io on Keras' {keras.backend.backend()} backend: image_dataset_from_directory, "
                        "augmentation layers in a tf.data map, prefetch; fit"}


def child_loader_tutorial(framework: str, source: Path, quick: bool) -> dict:
    """The PyTorch tutorial pipeline (ImageFolder + DataLoader with PIL transforms) feeding `framework`'s own step.

    PyTorch's tutorials and JAX's ("training with PyTorch data loading") both read images this way. torchvision
    itself is not used: its PyPI wheels need a CUDA build of torch, and the CPU build is what runs here, so its
    ImageFolder and the three transforms are written out with PIL below, doing the same work per image.
    """
    import random

    from PIL import Image

    from dlcompare import frameworks, architectures
    from dlcompare.batches import to_float

    params, sizes = settings(quick, [framework])
    module = frameworks.load(framework, params.train.threads)
    import torch
    from torch.utils.data import DataLoader, Dataset

    size, shift = params.prepare.image_size, params.train.augment.shift

    class ImageFolder(Dataset):
        def __init__(self, root: Path):
            self.classes = sorted(p.name for p in root.iterdir())
            self.samples = [(path, index) for index, name in enumerate(self.classes) for path in sorted((root / name).iterdir())]

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            path, label = self.samples[i]
            image = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)  # Resize
            if random.random() < 0.5:  # RandomHorizontalFlip
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            dx, dy = (round(random.uniform(-shift, shift) * size) for _ in range(2))  # RandomAffine(translate)
            image = image.transform(image.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy))
            return np.asarray(image), label

    spec = architectures.from_params(params)
    implementation = module.Implementation(spec, params.train, seed=0)
    implementation.build(spec.initial_weights(0))
    with tempfile.TemporaryDirectory() as folder:
        count = _tutorial_jpegs(source, Path(folder), sizes["tutorial_images"])
        loader = DataLoader(ImageFolder(Path(folder)), batch_size=params.train.batch_size, shuffle=True, drop_last=True,
                            num_workers=min(4, available_cores()), generator=torch.Generator().manual_seed(0))
        times = []
        for _ in range(sizes["epochs"]):
            started = time.perf_counter()
            for images, labels in loader:
                implementation.train_batch(to_float(images.numpy()), labels.numpy().astype(np.float32)[:, None],
                                           params.train.learning_rate)
            implementation.weights()  # waits for frameworks that dispatch asynchronously (JAX)
            times.append(time.perf_counter() - started)
    images_per_epoch = count - count % params.train.batch_size
    rate, _ = _epoch_rates(times, images_per_epoch)
    return {"tutorial_images_per_s": rate, "images": images_per_epoch, "jpeg_size": JPEG_SIZE,
            "pipeline": "PyTorch tutorial: ImageFolder + DataLoader (PIL resize, flip, translate), the framework's step"}


# The tutorial a user of each framework would start from: (kind of child, name in the results, framework it runs as).
TUTORIAL_OF = {"keras": ("tutorial", "keras-io", "keras"), "tensorflow": ("tutorial", "keras-io", "keras"),
               "keras-jax": ("tutorial", "keras-io-jax", "keras-jax"),
               "keras-torch": ("tutorial", "keras-io-torch", "keras-torch"),
               "pytorch": ("loader", "pytorch", "pytorch"), "jax": ("loader", "jax", "jax")}


def frameworks_imported() -> list[str]:
    """Which deep-learning frameworks this process has imported (a GPU machine may have only some)."""
    return sorted(name for name in ("tensorflow", "keras", "torch", "jax") if name in sys.modules)


def run_child(quick: bool, *args: str) -> dict:
    command = [sys.executable, __file__, *(["--quick"] if quick else []), "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark step {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the run and its table

def main() -> None:
    parser = argparse.ArgumentParser(description="dlcompare benchmarks (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI); the numbers mean nothing")
    parser.add_argument("--source", type=Path, default=SHARED_ZIP, help="Kaggle-layout zip to prepare and train on")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the JSON file")
    parser.add_argument("--frameworks", type=lambda text: text.split(","), default=None,
                        help="comma-separated subset (default: every registered framework whose packages are installed);"
                             " e.g. pytorch,jax on a machine without TensorFlow")
    parser.add_argument("--comparison", type=Path, default=ROOT / "reports" / "comparison.json",
                        help="compare's report whose time to accuracy is copied (default: the pipeline's last)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "NAME", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, path = args.child
        work = {"framework": child_framework, "memory": child_memory}
        work.update(tutorial=child_tutorial, loader=child_loader_tutorial)
        result = work[kind](name, Path(path), args.quick)
        print(json.dumps({**result, "frameworks_imported": frameworks_imported()}))
        return

    from dlcompare.frameworks import missing_packages

    chosen = args.frameworks or [name for name in FRAMEWORKS if not missing_packages(name)]
    unknown = [name for name in chosen if name not in FRAMEWORKS]
    if unknown:
        raise SystemExit(f"bench: unknown framework(s) {', '.join(unknown)}; registered: {', '.join(FRAMEWORKS)}")
    params, sizes = settings(args.quick, chosen)
    results = {"machine": machine(), "quick": args.quick, "frameworks": chosen, "engines": {}}
    with tempfile.TemporaryDirectory() as scratch:
        source = args.source
        if args.quick:
            source = Path(scratch) / "small.zip"
            with zipfile.ZipFile(args.source) as src, zipfile.ZipFile(source, "w") as dst:
                for name in [f"train/{c}.{i}.jpg" for c in ("cat", "dog") for i in range(150)]:
                    dst.writestr(name, src.read(name))
        results["prepare"] = {"images_per_s": prepare_rate(source, params, sizes["prepare_repeats"], Path(scratch)),
                              "image_size": params.prepare.image_size, "runs": sizes["prepare_repeats"]}
        prepared = str(Path(scratch) / "prepared")
        results["train"], results["inference"], scales = {}, {}, {}
        for framework in chosen:
            measured = run_child(args.quick, "framework", framework, prepared)
            scales[framework] = measured["scales"]
            memory = run_child(args.quick, "memory", framework, prepared)
            train = measured["train"]
            train["harness_overhead"] = 1 - train["images_per_s"] / train["bare_images_per_s"]
            # Bounds from the epochs' spread: an overhead whose range holds 0 is not one this run can show.
            (slowest, fastest), (bare_slowest, bare_fastest) = train["images_per_s_range"], train["bare_images_per_s_range"]
            train["harness_overhead_range"] = [1 - fastest / bare_slowest, 1 - slowest / bare_fastest]
            train["full_dataset_peak_rss_mb"] = memory["peak_rss_mb"]
            train["full_dataset_images"] = memory["images"]
            train["frameworks_imported"] = memory["frameworks_imported"]  # by training alone, as the memory figure is
            results["train"][framework] = train
            results["inference"][framework] = measured["inference"]
            engine = measured["engine"]
            best = results["engines"].setdefault(engine["name"], engine)
            if engine["gemm_gflops"] > best["gemm_gflops"]:
                results["engines"][engine["name"]] = engine
        # The machine's ceiling: the fastest GEMM any engine measured here (one BLAS on a CPU; the GPU on a GPU machine).
        results["gemm_gflops"] = max(engine["gemm_gflops"] for engine in results["engines"].values())
        for train in results["train"].values():
            train["fraction_of_gemm"] = train["gflops"] / results["gemm_gflops"]
        results["scales"] = {scale: {name: cells.pop(scale) for name, cells in scales.items()} for scale in SCALES}
        for cell in (cell for measured in results["scales"].values() for cell in measured.values()):
            cell["fraction_of_gemm"] = cell["gflops"] / results["gemm_gflops"]
        results["tutorials"] = {}
        for framework in chosen:
            kind, name, runs_as = TUTORIAL_OF[framework]
            if name not in results["tutorials"]:  # keras and tensorflow share the keras-io run on TensorFlow
                results["tutorials"][name] = run_child(args.quick, kind, runs_as, str(args.source))
            tutorial = results["tutorials"][name]
            train = results["train"][framework]
            train["tutorial_images_per_s"] = tutorial["tutorial_images_per_s"]
            train["speedup_vs_tutorial"] = train["images_per_s"] / tutorial["tutorial_images_per_s"]

    results["time_to_accuracy"] = pipeline_time_to_accuracy(args.comparison, chosen)
    results["machine"]["frameworks_imported_by_the_parent"] = frameworks_imported()
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"{socket.gethostname()}-{date.today().isoformat()}{'-quick' if args.quick else ''}.json"
    out_file.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, params, sizes, out_file)


def pipeline_time_to_accuracy(comparison: Path, frameworks: list[str]) -> dict:
    """Each framework's time to accuracy as the pipeline's last compare measured it (None where it has none)."""
    compared = json.loads(comparison.read_text())["frameworks"] if comparison.is_file() else {}
    return {name: compared[name]["time_to_accuracy_s"] if name in compared else None for name in frameworks}


def print_table(results: dict, params, sizes: dict, out_file: Path) -> None:
    m = results["machine"]
    gpus = sorted({gpu for engine in results["engines"].values() for gpu in engine["gpu_names"]})
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, GPUs: {', '.join(gpus) or 'none'}; "
          + ", ".join(f"{name} {version}" for name, version in m["versions"].items()))
    print(f"float32 GEMM (best of {sizes['gemm_repeats']}): "
          + ", ".join(f"{name} {e['gemm_gflops']:.1f} GFLOP/s ({e['gemm_n']}x{e['gemm_n']}, {e['intra_op']} threads"
                      + (f"; {e['float32_precision']})" if gpus else ")") for name, e in results["engines"].items())
          + f"; ceiling {results['gemm_gflops']:.1f}")
    print(f"prepare at {results['prepare']['image_size']} px (median of {results['prepare']['runs']}): "
          f"{results['prepare']['images_per_s']:.0f} images/s")
    print(f"training at {params.prepare.image_size} px, batch {params.train.batch_size}, {sizes['train_images']} images per epoch, "
          f"median of {sizes['epochs'] - 1} epochs after a warm-up epoch; 25k MB: one epoch over {sizes['full_dataset']:,} images")
    print(f"{'':12}{'images/s':>10}{'bare':>9}{'overhead (range)':>22}{'GFLOP/s':>9}{'of GEMM':>9}{'1st epoch +s':>13}"
          f"{'peak MB':>9}{'25k MB':>8}{'vs tutorial':>12}")
    for name, t in results["train"].items():
        low, high = t["harness_overhead_range"]
        print(f"{name:12}{t['images_per_s']:10.1f}{t['bare_images_per_s']:9.1f}"
              f"{t['harness_overhead']:7.3f} ({low:6.3f}..{high:6.3f}){t['gflops']:9.1f}"
              f"{t['fraction_of_gemm']:9.2f}{t['first_epoch_overhead_s']:13.2f}{t['peak_rss_mb']:9.0f}"
              f"{t['full_dataset_peak_rss_mb']:8.0f}{t['speedup_vs_tutorial']:12.2f}")
    print_scales(results["scales"])
    for name, b in results["tutorials"].items():
        print(f"tutorial {name:14} {b['tutorial_images_per_s']:8.1f} images/s ({b['images']} JPEGs, {b['jpeg_size']}): {b['pipeline']}")
    for name, i in results["inference"].items():
        print(f"inference {name:11} latency p50 {i['latency_ms_p50']:.2f} ms, p95 {i['latency_ms_p95']:.2f} ms; "
              f"{i['images_per_s']:.0f} images/s at batch {i['batch_size']} (median of 3 passes)")
    for name, reached in results["time_to_accuracy"].items():
        print(f"time to accuracy {name:11} " + ("no run in reports/comparison.json (dvc repro first)" if reached is None else
              ", ".join(f"{target}: " + (f"{r['median']:.0f} s" if r["median"] is not None else "not reached")
                        + f" ({r['reached']} of {r['seeds']} seeds)" for target, r in reached.items())))
    print(f"written: {out_file}")


def ranking(measured: dict) -> list[str]:
    return sorted(measured, key=lambda name: -measured[name]["images_per_s"])


def order_changes(first: dict, second: dict) -> list[str]:
    """The pairs whose order differs between two scales, each marked when both runs' epoch ranges overlap."""
    changes = []
    order = ranking(first)
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if second[b]["images_per_s"] > second[a]["images_per_s"]:
                overlap = any(r[a]["images_per_s_range"][1] >= r[b]["images_per_s_range"][0] and
                              r[b]["images_per_s_range"][1] >= r[a]["images_per_s_range"][0] for r in (first, second))
                changes.append(f"{b} overtakes {a}" + (" (within the epochs' spread)" if overlap else ""))
    return changes


def print_scales(scales: dict) -> None:
    names = list(next(iter(scales.values())))
    print("training at two model scales (own loop, images/s and fraction of the GEMM ceiling; each framework in its "
          "own process, the same FLOPs per epoch at every scale):")
    print(f"{'':12}" + "".join(f"{scale + ' ' + format(next(iter(m.values()))['flops_per_image'] / 1e6, ',.0f') + ' MFLOPs':>26}"
                                for scale, m in scales.items()))
    for name in names:
        print(f"{name:12}" + "".join(f"{m[name]['images_per_s']:18.1f} ({m[name]['fraction_of_gemm']:5.3f})" for m in scales.values()))
    for scale, measured in scales.items():
        print(f"order at {scale}: {' > '.join(ranking(measured))}")
    first_scale, first = next(iter(scales.items()))
    for scale, measured in list(scales.items())[1:]:
        changes = order_changes(first, measured)
        print(f"from {first_scale} to {scale}: {'; '.join(changes) if changes else 'the same order'}")


if __name__ == "__main__":
    main()
