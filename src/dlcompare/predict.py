"""`dlcompare predict IMAGE...`: every trained model's verdict on the user's own photos."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from dlcompare import frameworks
from dlcompare.batches import to_float
from dlcompare.data.images import BadImage, decode_image
from dlcompare.errors import UserError
from dlcompare.params import FRAMEWORKS, Params
from dlcompare.prepared import load_info


def trained_runs(models: Path) -> list[tuple[str, str]]:
    """(framework, run name) of every model folder under `models`."""
    found = []
    from dlcompare.train import framework_and_seed

    for directory in sorted(Path(models).glob("*-*")):
        try:
            framework, _ = framework_and_seed(directory.name)
        except ValueError:  # not a run's folder
            continue
        if directory.is_dir() and framework in FRAMEWORKS:
            found.append((framework, directory.name))
    return found


def load_images(paths: list[Path], params: Params) -> np.ndarray:
    """Decode the user's images exactly as prepare decoded the training data."""
    images = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        try:
            images.append(decode_image(path.read_bytes(), params.prepare.image_size, params.prepare.resize, params.prepare.max_pixels))
        except BadImage as bad:
            raise UserError(f"{path}: cannot be read as an image ({bad.reason})") from None
    return to_float(np.stack(images))


def predict(paths: list[Path], params: Params, prepared: Path = Path("data/prepared"), models: Path = Path("models"),
            on_timing=lambda run, load_seconds, predict_seconds: None) -> list[dict]:
    runs = trained_runs(models)
    if not runs:
        raise UserError(f"{models}: no trained models; run `dvc repro` (or `dlcompare train`) first")
    classes = load_info(prepared, params.prepare.image_size)["classes"]
    images = load_images(paths, params)
    threshold = params.evaluate.threshold
    rows = []
    for framework, run in runs:
        # Each framework in a process of its own: Keras can hold only one backend per process.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            probability, load_seconds, predict_seconds = pool.submit(
                _probabilities, framework, Path(models) / run, params.train.threads, params.train.precision, images).result()
        on_timing(run, load_seconds, predict_seconds)
        for path, p in zip(paths, probability):
            dog = bool(p > threshold)
            rows.append({"image": str(path), "model": run, "label": classes[int(dog)],
                         "probability": float(p if dog else 1 - p)})  # of the label printed
    return rows


def _probabilities(framework: str, model_dir: Path, threads: int, precision: str, images: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Probabilities, the seconds spent importing the framework and loading the model, and the seconds predicting."""
    started = time.perf_counter()
    predictor = frameworks.load(framework, threads, precision).load_predictor(model_dir, threads)
    loaded = time.perf_counter()
    probability = predictor(images)
    return probability, loaded - started, time.perf_counter() - loaded
