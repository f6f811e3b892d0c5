"""Stage `compare`: every framework side by side, with statistics that hold up.

Reads the metrics, per-image predictions and curves of every train@/evaluate@
run in the matrix, and writes the headline metrics (metrics/compare.json, the
only declared metrics file, so `dvc exp show` and `dvc metrics diff` stay
readable; the speed stage declares metrics/speed.json), every number behind them (reports/comparison.json), the figures
under plots/compare/, every run's curves and ROC in one table each (plots/runs/,
which dvc.yaml overlays on one axis per metric) and reports/comparison.md.
Nothing is written unless every run the params ask for has been evaluated.
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
from dlcompare.frameworks import REGISTRY
from dlcompare.params import Params
from dlcompare.report import PAPER, write_report
from dlcompare.train import DVCLIVE_METRICS, run_name, steady_epochs, time_to_accuracy


def _read_json(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro` (stage {stage}) before compare")
    return json.loads(path.read_text())


def _read_history(directory: Path, stage: str) -> dict[str, list[float]]:
    history = {}
    for key, name in DVCLIVE_METRICS.items():
        tsv = directory / "plots" / "metrics" / f"{name}.tsv"
        if not tsv.is_file():
            raise UserError(f"{tsv} is missing: run `dvc repro` (stage {stage}) before compare")
        history[key] = pd.read_csv(tsv, sep="\t")[name.split("/")[-1]].tolist()
    return history


def _median(values) -> float:
    return float(statistics.median(values))


def _epoch_rate(runs, train, histories) -> float:
    """Training images/s of the pipeline's runs: the median over every seed's steady epochs (a description of
    those runs; the speed verdicts come from the speed stage's interleaved rounds)."""
    return _median(train[r]["images_per_epoch"] / s for r in runs for s in steady_epochs(histories[r]["train_seconds"]))


UNRECORDED = {"host": "unrecorded", "cpu": "not recorded (a run from before machines were recorded)", "cores": 0,
              "gpus": "not recorded"}


def machines_of(train: dict) -> dict[str, dict]:
    """host -> the machine's record and the runs trained on it (`dlcompare cluster run` spreads runs over machines)."""
    machines: dict[str, dict] = {}
    for run, metrics in train.items():
        record = metrics.get("machine", UNRECORDED)
        machines.setdefault(record["host"], {**record, "runs": []})["runs"].append(run)
    return machines


def _epoch_rates_by_machine(runs, train, histories) -> dict[str, float]:
    """The runs' epoch rate per machine they ran on: rates from different machines are never pooled."""
    hosts = {r: train[r].get("machine", UNRECORDED)["host"] for r in runs}
    return {host: _epoch_rate([r for r in runs if hosts[r] == host], train, histories) for host in dict.fromkeys(hosts.values())}


def _time_to_accuracy(histories: list[dict]) -> dict:
    """Per validation-accuracy target: the median over the seeds that reached it, and how many did."""
    records = [[{"train_seconds": s, "val_accuracy": a} for s, a in zip(h["train_seconds"], h["val_accuracy"])]
               for h in histories]
    per_seed = [time_to_accuracy(run) for run in records]
    summary = {}
    for target in per_seed[0]:
        reached = [seconds[target] for seconds in per_seed if seconds[target] is not None]
        summary[target] = {"median": _median(reached) if reached else None, "reached": len(reached), "seeds": len(per_seed)}
    return summary


def _framework_summary(name, seeds, train, evaluate, correct, predictions, histories, speed, data, params) -> dict:
    runs = [run_name(name, seed) for seed in seeds]
    actual = (predictions[runs[0]]["actual"] == data["classes"][1]).to_numpy()
    probabilities = np.stack([predictions[r]["probability"].fillna(0.5).to_numpy() for r in runs])
    auc_ci = stats.bootstrap_auc_ci(actual, probabilities, params.evaluate.bootstrap_samples, params.evaluate.bootstrap_seed)
    accuracies = [evaluate[r]["accuracy"] for r in runs]
    aucs = [evaluate[r]["roc_auc"] for r in runs]
    first_overhead = [max(0.0, train[r]["seconds"]["first_epoch"] - train[r]["seconds"]["epoch_median"]) for r in runs]
    seconds = {
        "prepare": data["prepare_seconds"],
        "data": _median(train[r]["seconds"]["data"] for r in runs),
        "import": _median(train[r]["seconds"]["import"] for r in runs),
        "build": _median(train[r]["seconds"]["build"] for r in runs),
        "compile": _median(first_overhead),
        "train": _median(train[r]["seconds"]["train"] for r in runs) - _median(first_overhead),
        "evaluate": _median(evaluate[r]["seconds"] for r in runs),
    }
    total = sum(seconds.values())
    low, high = stats.accuracy_interval(np.stack([correct[r] for r in runs]))
    return {
        "seeds": len(seeds),
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies, ddof=1)) if len(seeds) > 1 else 0.0,
        "accuracy_ci95": [low, high],
        "accuracy_ci_method": ("seeds × test images (image effects counted once), Satterthwaite t" if len(seeds) > 1
                               else "test images of one run only (Wilson)"),
        "accuracy_per_seed": accuracies,
        "roc_auc_mean": float(np.mean(aucs)),
        "roc_auc_per_seed": aucs,
        "roc_auc_ci95": list(auc_ci),  # test images only, averaged over the seeds run
        # The speed stage's geometric means over interleaved rounds, with their intervals.
        **{figure: speed[figure]["frameworks"][name] for figure in ("train_images_per_s", "latency_ms", "inference_images_per_s")},
        "epoch_images_per_s_by_machine": _epoch_rates_by_machine(runs, train, histories),
        "evaluate_images_per_s": _median(evaluate[r]["images_per_s"] for r in runs),
        "time_to_accuracy_s": _time_to_accuracy([histories[r] for r in runs]),
        "epoch_median_s": _median(train[r]["seconds"]["epoch_median"] for r in runs),
        "first_epoch_s": _median(train[r]["seconds"]["first_epoch"] for r in runs),
        "peak_rss_mb": _median(train[r]["peak_rss_mb"] for r in runs),
        "params": train[runs[0]]["params"],
        "statements": train[runs[0]]["statements"],
        "runtime": train[runs[0]]["runtime"],
        "versions": train[runs[0]]["versions"],
        "time_s": {phase: round(value, 3) for phase, value in seconds.items()},
        "time_percent": {phase: round(100 * value / total, 2) for phase, value in seconds.items()},
    }


def _pair_summary(a, b, seeds, evaluate, correct, accuracy, speed) -> dict:
    per_seed = {}
    for seed in seeds:
        ra, rb = run_name(a, seed), run_name(b, seed)
        only_a, only_b = stats.discordant(correct[ra], correct[rb])
        p, _ = stats.mcnemar_exact(only_a, only_b)
        per_seed[str(seed)] = {"accuracy_diff": evaluate[ra]["accuracy"] - evaluate[rb]["accuracy"],
                               "b": only_a, "c": only_b, "mcnemar_p": p}
    key = f"{a}_vs_{b}"
    return {
        "accuracy_diff": accuracy["diff"], "accuracy_diff_ci95": accuracy["ci95"], "p_value": accuracy["p"],
        "log10_p": accuracy["log10_p"], "method": accuracy["method"], "framework_level": accuracy["framework_level"],
        "p_holm": accuracy["p_holm"], "holm_level": accuracy["holm_level"], "accuracy_diff_ci_holm": accuracy["ci_holm"],
        "significant": accuracy["significant"], "detectable_gap": accuracy["detectable"], "verdict": accuracy["verdict"],
        "pooled_seed_noise": accuracy["pooled"], "seed_spread_check_p": accuracy["seed_spread_check_p"],
        "per_seed": per_seed,
        "speed": {figure: speed[figure]["pairs"][key] for figure in ("train_images_per_s", "latency_ms", "inference_images_per_s")},
        "same_engine": REGISTRY[a].runtime == REGISTRY[b].runtime,
    }


def headline(result: dict) -> dict:
    """What `dvc exp show` and `dvc metrics diff` display: per framework test accuracy with its 95 % interval,
    training images/s (the runs' steady-state median, where they all shared one machine) and peak memory; per pair
    the accuracy difference and whether it is claimed. DVC drops lists from metrics, so an interval is two keys."""
    table = {}
    for name, entry in result["frameworks"].items():
        low, high = entry["accuracy_ci95"]
        # Short keys: `dvc exp show` makes one column of each, headed framework.key; six `<name>.acc` columns
        # and the experiment names fit in 120 characters.
        table[name] = {"acc": round(entry["accuracy_mean"], 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}
        if entry["epoch_images_per_s"] is not None:  # absent where the runs span machines (no pooled rate)
            table[name]["images_per_s"] = round(entry["epoch_images_per_s"], 1)
        table[name]["peak_mb"] = round(entry["peak_rss_mb"])
    for key, pair in result["pairs"].items():
        table[key.replace("_vs_", "-vs-")] = {"diff": round(pair["accuracy_diff"], 4), "significant": pair["significant"]}
    return table


def _run_tables(histories: dict, predictions: dict, roc_root: Path, frameworks, seeds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's curves and ROC as one long table each (a `run` column), for dvc plots to overlay."""
    curves, roc = [], []
    for framework in frameworks:
        for seed in seeds:
            run = run_name(framework, seed)
            frame = pd.DataFrame(histories[run])
            frame.insert(0, "epoch", range(1, len(frame) + 1))
            curves.append(frame.assign(run=run, framework=framework, seed=seed))
            roc.append(pd.read_csv(roc_root / f"{run}.csv").assign(run=run, framework=framework, seed=seed))
    return pd.concat(curves, ignore_index=True), pd.concat(roc, ignore_index=True)


def compare(params: Params, metrics_root: Path = Path("metrics"), plots_root: Path = Path("plots"),
            curves_root: Path = Path("dvclive"), prepared: Path = Path("data/prepared"),
            speed_file: Path = Path("speed/verdicts.json"), report: Path = Path("reports/comparison.md")) -> dict:
    frameworks, seeds = params.train.frameworks, params.train.seeds
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
    speed = _read_json(speed_file, "speed")
    measured = set(speed["train_images_per_s"]["frameworks"])
    if measured != set(frameworks):
        raise UserError(f"{speed_file} measured {', '.join(sorted(measured))}, not train.frameworks; re-run `dvc repro speed`")
    reference = predictions[run_name(frameworks[0], seeds[0])]["path"]
    for run, frame in predictions.items():
        if not frame["path"].equals(reference):
            raise UserError(f"plots/eval/{run}/predictions.csv is for other test images than the other runs; re-run `dvc repro`")

    per_framework = {f: _framework_summary(f, seeds, train, evaluate, correct, predictions, histories, speed, data, params)
                     for f in frameworks}
    machines = machines_of(train)
    for entry in per_framework.values():
        # One figure per framework only where every run of the matrix shared one machine: across machines the
        # frameworks' epoch rates would compare the machines as much as the frameworks.
        by_machine = entry["epoch_images_per_s_by_machine"]
        entry["epoch_images_per_s"] = next(iter(by_machine.values())) if len(machines) == 1 else None
    accuracy = stats.accuracy_comparisons({f: np.stack([correct[run_name(f, s)] for s in seeds]) for f in frameworks})
    pairs = {f"{a}_vs_{b}": _pair_summary(a, b, seeds, evaluate, correct, accuracy[f"{a}_vs_{b}"], speed)
             for a, b in combinations(frameworks, 2)}
    result = {"n_test": int(len(reference)), "seeds": list(seeds), "frameworks": per_framework, "pairs": pairs,
              "speed_design": speed["design"], "speed_cost_seconds": speed["cost_seconds"], "machines": machines}

    with building_dir(plots_root / "compare") as figures:
        plots.accuracy(per_framework, PAPER, figures / "accuracy.png", n_test=len(reference))
        plots.time_breakdown({f: s["time_s"] for f, s in per_framework.items()}, figures / "time_breakdown.png")
        plots.curves(histories, figures / "curves.png")
        plots.throughput_and_memory(per_framework, figures / "throughput_memory.png")
        if pairs:
            plots.pair_matrix(list(frameworks), pairs, figures / "pairs.png")
        matrices = {}
        for f in frameworks:
            total = np.zeros((2, 2), dtype=int)
            for seed in seeds:
                c = evaluate[run_name(f, seed)]["confusion"]
                total += np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
            matrices[f] = total
        plots.confusions(matrices, data["classes"], figures / "confusion.png", seeds=len(seeds))
    curves, roc = _run_tables(histories, predictions, plots_root / "roc", frameworks, seeds)
    with building_dir(plots_root / "runs") as tables:
        curves.to_csv(tables / "curves.csv", index=False, lineterminator="\n")
        roc.to_csv(tables / "roc.csv", index=False, lineterminator="\n")
    write_report(report, result, data, params, figures_dir=plots_root / "compare")
    write_json(report.with_suffix(".json"), result)
    write_json(metrics_root / "compare.json", headline(result))
    return result
