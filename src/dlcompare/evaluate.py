"""Stage `evaluate@<framework>-<seed>`: test-set metrics, predictions and speed of one model.

The model is loaded from its native saved format (what a user would deploy),
not taken from the training process. Per-image predictions are kept so the
compare stage can pair frameworks image by image.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from dlcompare import frameworks
from dlcompare.atomic import write_json
from dlcompare.batches import EvalBatches, to_float
from dlcompare.errors import UserError
from dlcompare.params import Params
from dlcompare.prepared import load_info, load_split, split_paths
from dlcompare.train import run_name

WARMUP_CALLS = 3
THROUGHPUT_PASSES = 5  # batched passes over the test set, for throughput with a spread


def predicted_classes(actual: np.ndarray, probability: np.ndarray, threshold: float) -> np.ndarray:
    """Class indices; an image whose probability is not a number (a diverged model) counts as wrong."""
    predicted = (probability > threshold).astype(int)
    invalid = ~np.isfinite(probability)
    predicted[invalid] = 1 - actual[invalid]
    return predicted


def classification_metrics(actual: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC, log loss and confusion counts (class 1 is positive).

    Non-finite probabilities are counted (`invalid_predictions`), scored as wrong, and given 0.5 for the
    ranking metrics, so a diverged model gets defined, honest numbers instead of a crash.
    """
    predicted = predicted_classes(actual, probability, threshold)
    invalid = ~np.isfinite(probability)
    probability = np.where(invalid, 0.5, probability)
    tn, fp, fn, tp = skm.confusion_matrix(actual, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(actual)) == 2
    return {
        "accuracy": float(skm.accuracy_score(actual, predicted)),
        "precision": float(skm.precision_score(actual, predicted, zero_division=0)),
        "recall": float(skm.recall_score(actual, predicted, zero_division=0)),
        "f1": float(skm.f1_score(actual, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(actual, probability)) if both_classes else 0.5,
        "log_loss": float(skm.log_loss(actual, np.clip(probability, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "invalid_predictions": int(invalid.sum()),
    }


def latency_ms(predict, image: np.ndarray, runs: int) -> list[float]:
    """Single-image prediction times in ms, after a warm-up."""
    for _ in range(WARMUP_CALLS):
        predict(image)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        predict(image)
        times.append((time.perf_counter() - started) * 1000)
    return times


def evaluate(framework: str, seed: int, params: Params, prepared: Path = Path("data/prepared"),
             models: Path = Path("models"), metrics_dir: Path = Path("metrics/eval"),
             plots_dir: Path = Path("plots"), timings_dir: Path = Path("timings")) -> dict:
    run = run_name(framework, seed)
    model_dir = models / run
    if not model_dir.exists():
        raise UserError(f"{model_dir}: no trained model; run `dlcompare train --framework {framework} --seed {seed}` first")
    classes = load_info(prepared, params.prepare.image_size)["classes"]
    x_test, y_test = load_split(prepared, "test")
    predict = frameworks.load(framework, params.train.threads, params.train.precision).load_predictor(model_dir, params.train.threads)

    batches = EvalBatches(x_test, None, params.evaluate.batch_size)
    predict(batches.batch(0))  # trace/compile outside the timed passes
    pass_seconds = []
    for _ in range(THROUGHPUT_PASSES):
        started = time.perf_counter()
        probability = np.concatenate([predict(images) for images in batches])
        pass_seconds.append(time.perf_counter() - started)
    seconds = statistics.median(pass_seconds)
    latencies = latency_ms(predict, to_float(np.asarray(x_test[:1])), params.evaluate.latency_runs)
    p50, p95 = statistics.median(latencies), float(np.percentile(latencies, 95))

    result = classification_metrics(y_test, probability, params.evaluate.threshold)
    result.update({
        "n_test": int(len(y_test)),
        "seconds": round(seconds, 3),
        "latency_ms_p50": round(p50, 3),
        "latency_ms_p95": round(p95, 3),
        "images_per_s": round(len(y_test) / seconds, 1),
    })

    names = np.array(classes)
    predicted = predicted_classes(y_test, probability, params.evaluate.threshold)
    run_plots = plots_dir / "eval" / run
    run_plots.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "path": split_paths(prepared, "test"), "actual": names[y_test], "predicted": names[predicted],
        "probability": np.round(probability, 6),
    }).to_csv(run_plots / "predictions.csv", index=False, lineterminator="\n")
    fpr, tpr, thresholds = skm.roc_curve(y_test, probability)
    roc_file = plots_dir / "roc" / f"{run}.csv"
    roc_file.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thresholds, 1.0)}).round(6).to_csv(
        roc_file, index=False, lineterminator="\n")
    # Every repeated measurement, for compare's intervals (not a metrics file: dvc would show 60 columns).
    write_json(timings_dir / f"{run}.json", {
        "latency_ms": [round(t, 4) for t in latencies],
        "images_per_s": [round(len(y_test) / t, 2) for t in pass_seconds],
    })
    write_json(metrics_dir / f"{run}.json", result)
    return result
