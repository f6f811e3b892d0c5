"""Stage `compare`: every framework side by side, with statistics that hold up.

Reads the metrics, per-image predictions and curves of every train@/evaluate@
run in the matrix, and writes metrics/compare.json, the figures under
plots/compare/ and reports/comparison.md. Nothing is written unless every run
the params ask for has been evaluated.
"""

from __future__ import annotations

import json
import statistics
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from dlcompare import plots, stats
from dlcompare.atomic import building_dir, write_json
from dlcompare.errors import UserError
from dlcompare.params import Params
from dlcompare.report import PAPER, write_report
from dlcompare.train import run_name


def _read_json(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro` (stage {stage}) before compare")
    return json.loads(path.read_text())


def _read_history(directory: Path, stage: str) -> dict[str, list[float]]:
    history = {}
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        split, metric = key.split("_", 1)
        tsv = directory / "plots" / "metrics" / split / f"{metric}.tsv"
        if not tsv.is_file():
            raise UserError(f"{tsv} is missing: run `dvc repro` (stage {stage}) before compare")
        history[key] = pd.read_csv(tsv, sep="\t")[metric].tolist()
    return history


def _median(values) -> float:
    return float(statistics.median(values))


def _framework_summary(name, seeds, train, evaluate, predictions, data, params) -> dict:
    runs = [run_name(name, seed) for seed in seeds]
    accuracies = [evaluate[r]["accuracy"] for r in runs]
    aucs = [evaluate[r]["roc_auc"] for r in runs]
    e = params.evaluate
    if len(seeds) >= 2:
        accuracy_ci, auc_ci, method = stats.mean_ci(accuracies), stats.mean_ci(aucs), "t interval across seeds"
    else:
        only = predictions[runs[0]]
        n = len(only)
        accuracy_ci = stats.binomial_ci(int(round(accuracies[0] * n)), n)
        actual = (only["actual"] == data["classes"][1]).to_numpy()
        auc_ci = stats.bootstrap_auc_ci(actual, only["probability"].to_numpy(), min(e.bootstrap_samples, 500), e.bootstrap_seed)
        method = "binomial interval of a single run (test-set sampling only)"
    seconds = {
        "prepare": data["prepare_seconds"],
        "data": _median(train[r]["seconds"]["data"] for r in runs),
        "build": _median(train[r]["seconds"]["import"] + train[r]["seconds"]["build"] for r in runs),
        "train": _median(train[r]["seconds"]["train"] for r in runs),
        "evaluate": _median(evaluate[r]["seconds"] for r in runs),
    }
    total = sum(seconds.values())
    return {
        "seeds": len(seeds),
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies, ddof=1)) if len(seeds) > 1 else 0.0,
        "accuracy_ci95": list(accuracy_ci),
        "accuracy_ci_method": method,
        "accuracy_per_seed": accuracies,
        "roc_auc_mean": float(np.mean(aucs)),
        "roc_auc_std": float(np.std(aucs, ddof=1)) if len(seeds) > 1 else 0.0,
        "roc_auc_ci95": list(auc_ci),
        "train_images_per_s": _median(train[r]["images_per_s"] for r in runs),
        "epoch_median_s": _median(train[r]["seconds"]["epoch_median"] for r in runs),
        "first_epoch_s": _median(train[r]["seconds"]["first_epoch"] for r in runs),
        "peak_rss_mb": _median(train[r]["peak_rss_mb"] for r in runs),
        "latency_ms_p50": _median(evaluate[r]["latency_ms_p50"] for r in runs),
        "inference_images_per_s": _median(evaluate[r]["images_per_s"] for r in runs),
        "params": train[runs[0]]["params"],
        "lines_of_code": train[runs[0]]["lines_of_code"],
        "adapter_lines": train[runs[0]]["adapter_lines"],
        "runtime": train[runs[0]]["threads"],
        "versions": train[runs[0]]["versions"],
        "time_s": {phase: round(value, 3) for phase, value in seconds.items()},
        "time_percent": {phase: round(100 * value / total, 2) for phase, value in seconds.items()},
    }


def _pair_summary(a, b, seeds, evaluate, correct, params) -> dict:
    e = params.evaluate
    per_seed, b_total, c_total = {}, 0, 0
    for seed in seeds:
        ra, rb = run_name(a, seed), run_name(b, seed)
        only_a, only_b = stats.discordant(correct[ra], correct[rb])
        b_total, c_total = b_total + only_a, c_total + only_b
        per_seed[str(seed)] = {
            "accuracy_diff": evaluate[ra]["accuracy"] - evaluate[rb]["accuracy"],
            "b": only_a, "c": only_b, "mcnemar_p": stats.mcnemar_exact(only_a, only_b),
        }
    diffs = [entry["accuracy_diff"] for entry in per_seed.values()]
    stacked_a = np.stack([correct[run_name(a, s)] for s in seeds])
    stacked_b = np.stack([correct[run_name(b, s)] for s in seeds])
    image_ci = stats.paired_bootstrap_ci(stacked_a, stacked_b, e.bootstrap_samples, e.bootstrap_seed)
    result = {
        "accuracy_diff": float(np.mean(diffs)),
        "accuracy_diff_ci95_images": list(image_ci),
        "per_seed": per_seed,
    }
    if len(seeds) >= 3:
        seed_ci = stats.mean_ci(diffs)
        p_value, test = stats.seed_level_p(
            [evaluate[run_name(a, s)]["accuracy"] for s in seeds], [evaluate[run_name(b, s)]["accuracy"] for s in seeds]
        ), f"paired t-test over {len(seeds)} seeds"
        result.update(accuracy_diff_ci95_seeds=list(seed_ci), seed_test_p=p_value)
        ci = seed_ci
    else:
        p_value = stats.mcnemar_exact(b_total, c_total)
        test = "exact McNemar" + (" (discordant images of both seeds pooled)" if len(seeds) == 2 else "")
        ci = image_ci
    result.update(test=test, p_value=p_value, accuracy_diff_ci95=list(ci),
                  verdict=stats.verdict(a, b, result["accuracy_diff"], tuple(ci), p_value, test))
    return result


def compare(params: Params, metrics_root: Path = Path("metrics"), plots_root: Path = Path("plots"),
            curves_root: Path = Path("dvclive"), prepared: Path = Path("data/prepared"),
            report: Path = Path("reports/comparison.md")) -> dict:
    frameworks, seeds = params.train.frameworks, params.train.seeds
    if len(frameworks) < 2:
        raise UserError(f"train.frameworks = {frameworks}: compare needs at least two frameworks")
    data = _read_json(metrics_root / "data.json", "prepare")
    info = _read_json(prepared / "info.json", "prepare")
    data = {**data, "classes": info["classes"], "prepare_seconds": data["seconds"], "info": info}

    train, evaluate, predictions, histories, correct = {}, {}, {}, {}, {}
    for framework in frameworks:
        for seed in seeds:
            run = run_name(framework, seed)
            train[run] = _read_json(metrics_root / "train" / f"{run}.json", f"train@{run}")
            evaluate[run] = _read_json(metrics_root / "eval" / f"{run}.json", f"evaluate@{run}")
            file = plots_root / "eval" / run / "predictions.csv"
            if not file.is_file():
                raise UserError(f"{file} is missing: run `dvc repro` (stage evaluate@{run}) before compare")
            predictions[run] = pd.read_csv(file)
            histories[run] = _read_history(curves_root / run, f"train@{run}")
            correct[run] = (predictions[run]["actual"] == predictions[run]["predicted"]).to_numpy()
    reference = predictions[run_name(frameworks[0], seeds[0])]["path"]
    for run, frame in predictions.items():
        if not frame["path"].equals(reference):
            raise UserError(f"plots/eval/{run}/predictions.csv is for other test images than the other runs; re-run `dvc repro`")

    per_framework = {f: _framework_summary(f, seeds, train, evaluate, predictions, data, params) for f in frameworks}
    pairs = {f"{a}_vs_{b}": _pair_summary(a, b, seeds, evaluate, correct, params) for a, b in combinations(frameworks, 2)}
    result = {"n_test": int(len(reference)), "seeds": list(seeds), "frameworks": per_framework, "pairs": pairs}

    with building_dir(plots_root / "compare") as figures:
        plots.accuracy(per_framework, PAPER, figures / "accuracy.png")
        plots.time_breakdown({f: s["time_s"] for f, s in per_framework.items()}, figures / "time_breakdown.png")
        plots.curves(histories, figures / "curves.png")
        plots.throughput_and_memory(per_framework, figures / "throughput_memory.png")
        matrices = {}
        for f in frameworks:
            total = np.zeros((2, 2), dtype=int)
            for seed in seeds:
                c = evaluate[run_name(f, seed)]["confusion"]
                total += np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
            matrices[f] = total
        plots.confusions(matrices, data["classes"], figures / "confusion.png")
    write_report(report, result, data, train, params, figures_dir=plots_root / "compare")
    write_json(metrics_root / "compare.json", result)
    return result
