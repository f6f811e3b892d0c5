"""What every benchmark shares: the project's paths, the run's sizes (full or --quick), the model scales, the machine."""

from __future__ import annotations

import os
import platform
import statistics
from importlib import metadata
from pathlib import Path

from dlcompare.frameworks import NAMES, REGISTRY
from dlcompare import machine as this_machine

ROOT = Path(__file__).resolve().parents[1]
SHARED_ZIP = ROOT.parent / "shared" / "datasets" / "dogs-vs-cats-train-10k.zip"
FRAMEWORKS = NAMES
FULL_DATASET = 25_000
# bench.py --precision sets it for its child processes, which read their params through settings().
PRECISION_VARIABLE = "DLCOMPARE_BENCH_PRECISION"


def settings(quick: bool, frameworks: list[str]):
    """Params for the run (the project's defaults, or tiny ones for --quick) and the benchmark's sizes.

    Only the measured frameworks need to be installed (a GPU machine may have PyTorch and JAX alone).
    """
    from dlcompare.params import load_params

    params = load_params(ROOT / "params.yaml", frameworks)
    if os.environ.get(PRECISION_VARIABLE):
        params = params.model_copy(update={"train": params.train.model_copy(update={"precision": os.environ[PRECISION_VARIABLE]})})
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


FRAMEWORK_PACKAGES = sorted({package for entry in REGISTRY.values() for package in entry.packages})


def machine() -> dict:
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        memory_gb = None
    versions = {}
    for name in (*FRAMEWORK_PACKAGES, "numpy", "pillow", "dvc"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {**this_machine.machine(), "memory_gb": memory_gb, "python": platform.python_version(), "versions": versions}


def epoch_rates(seconds: list[float], images: int) -> tuple[float, float]:
    """(steady-state images/s = images / median of the steady epochs, first-epoch overhead in s)."""
    from dlcompare.train import steady_epochs  # the pipeline's rule, so bench and train metrics agree

    steady = statistics.median(steady_epochs(seconds))
    return images / steady, seconds[0] - steady
