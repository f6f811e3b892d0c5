"""The comparison figures (matplotlib, written as PNG).

Each function takes plain numbers (what compare.py computed) and one output
path, so the figures can be regenerated or tested without any framework.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PHASES = ("prepare", "data", "import", "build", "compile", "train", "evaluate")
PHASE_LABELS = {"prepare": "preprocessing (prepare)", "data": "data loading", "import": "framework import",
                "build": "model building", "compile": "first-epoch overhead (tracing, compiling)",
                "train": "training (optimising)", "evaluate": "evaluation"}
SEED_MARKERS = "os^Dv<>p*h"
COLOURS = plt.get_cmap("tab10").colors


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def accuracy(per_framework: dict, paper: dict, path: Path, n_test: int) -> None:
    """Mean test accuracy with its 95 % interval, each seed as a dot, the paper's single runs for context."""
    figure, axis = plt.subplots(figsize=(6.5, 4.8))
    names = list(per_framework)
    for i, name in enumerate(names):
        entry = per_framework[name]
        mean, (low, high) = 100 * entry["accuracy_mean"], entry["accuracy_ci95"]
        axis.errorbar(i, mean, yerr=[[mean - 100 * low], [100 * high - mean]], fmt="o", capsize=8,
                      color=COLOURS[i], markersize=9, label=f"{name}: mean, 95 % CI ({entry['accuracy_ci_method']})")
        seeds = 100 * np.asarray(entry["accuracy_per_seed"])
        axis.scatter(np.full(len(seeds), i + 0.12), seeds, color=COLOURS[i], alpha=0.5, s=18, marker="x")
    for j, (label, value) in enumerate(sorted(paper.items(), key=lambda item: -item[1])):
        axis.axhline(value, color="grey", linestyle=":" if j else "--", linewidth=1)
        axis.annotate(f"paper, {label}: {value:.2f} %", (-0.55, value), fontsize=8, color="grey",
                      ha="left", va="bottom" if j == 0 else "top")
    axis.set_xticks(range(len(names)), names)
    axis.set_xlim(-0.6, len(names) - 0.4)
    axis.set_ylabel("test accuracy (%)")
    seeds = next(iter(per_framework.values()))["seeds"]
    axis.set_title(f"Test accuracy, {n_test:,} test images, {seeds} seed{'s' if seeds != 1 else ''} (x: single seeds)")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    _save(figure, path)


def time_breakdown(seconds: dict, path: Path) -> None:
    """Stacked bars of seconds per phase (left) and the share of each phase (right), per framework."""
    names = list(seconds)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, as_percent in ((left, False), (right, True)):
        bottom = np.zeros(len(names))
        for k, phase in enumerate(PHASES):
            values = np.array([seconds[name][phase] for name in names], dtype=float)
            if as_percent:
                totals = np.array([sum(seconds[name][p] for p in PHASES) for name in names])
                values = 100 * values / totals
            axis.bar(names, values, bottom=bottom, color=COLOURS[k], label=PHASE_LABELS[phase])
            bottom += values
        axis.set_ylabel("share of total time (%)" if as_percent else "seconds (median over seeds)")
    left.set_title("Time per phase")
    right.set_title("Share of time per phase")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def curves(histories: dict, path: Path) -> None:
    """Train and validation accuracy and loss per epoch, every run overlaid (colour: framework, marker: seed)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    from dlcompare.train import framework_and_seed

    frameworks = list(dict.fromkeys(framework_and_seed(run)[0] for run in histories))
    seeds = sorted({framework_and_seed(run)[1] for run in histories})
    for run, history in histories.items():
        name, seed = framework_and_seed(run)
        colour, marker = COLOURS[frameworks.index(name) % 10], SEED_MARKERS[seeds.index(seed) % len(SEED_MARKERS)]
        epochs = np.arange(1, len(history["train_accuracy"]) + 1)
        for axis, metric in zip(axes, ("accuracy", "loss")):
            axis.plot(epochs, history[f"train_{metric}"], color=colour, linestyle="--", alpha=0.6, marker=marker,
                      markersize=3, label=f"{run} train")
            axis.plot(epochs, history[f"val_{metric}"], color=colour, alpha=0.9, marker=marker, markersize=3,
                      label=f"{run} validation")
    for axis, metric in zip(axes, ("accuracy", "loss")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(f"{metric.capitalize()} per epoch: {len(histories)} runs, seeds {seeds}")
    axes[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), ncol=1 + len(histories) // 16)
    _save(figure, path)


def throughput_and_memory(per_framework: dict, path: Path) -> None:
    """Training images/s, inference images/s, latency (the speed stage's rounds, with 95 % intervals) and peak memory."""
    names = list(per_framework)
    panels = (("train_images_per_s", "training images/s"), ("inference_images_per_s", "inference images/s (batched)"),
              ("latency_ms", "latency per image (ms)"), ("peak_rss_mb", "peak training memory (MB)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.3 * len(names), 3.8))
    for axis, (key, title) in zip(axes, panels):
        entries = [per_framework[name][key] for name in names]
        if isinstance(entries[0], dict):
            values = np.array([e["value"] for e in entries])
            errors = np.array([[v - e["ci95"][0], e["ci95"][1] - v] if e["ci95"] else [0.0, 0.0]
                               for v, e in zip(values, entries)]).T
            title += "\ngeometric mean of rounds, 95 % CI"
        else:
            values, errors = np.array(entries, dtype=float), None
        bars = axis.bar(names, values, yerr=errors, capsize=4, color=[COLOURS[i % 10] for i in range(len(names))])
        axis.bar_label(bars, fmt="%.0f" if values.max() >= 10 else "%.2f", fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelrotation=45, labelsize=8)
    _save(figure, path)


def pair_matrix(names: list[str], pairs: dict, path: Path) -> None:
    """Accuracy difference (row − column, points) of every pair; * where the Holm-corrected verdict claims one."""
    size = len(names)
    matrix = np.full((size, size), np.nan)
    labels = [["" for _ in names] for _ in names]
    for key, pair in pairs.items():
        a, b = key.split("_vs_")
        i, j = names.index(a), names.index(b)
        claimed = pair["significant"]
        for row, column, sign in ((i, j, 1), (j, i, -1)):
            matrix[row, column] = sign * 100 * pair["accuracy_diff"]
            labels[row][column] = f"{sign * 100 * pair['accuracy_diff']:+.2f}{' *' if claimed else ''}"
    figure, axis = plt.subplots(figsize=(1.2 * size + 2.5, 1.0 * size + 1.8))
    bound = max(0.5, np.nanmax(np.abs(matrix))) if size > 1 else 1.0
    image = axis.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound)
    for (row, column), text in np.ndenumerate(np.array(labels, dtype=object)):
        axis.text(column, row, text, ha="center", va="center", fontsize=8)
    axis.set_xticks(range(size), names, rotation=45, ha="right")
    axis.set_yticks(range(size), names)
    axis.set_title("Test accuracy difference, row − column (points)\n* = significant after Holm correction (needs ≥ 3 seeds)",
                   fontsize=9)
    figure.colorbar(image, ax=axis, shrink=0.8)
    _save(figure, path)


def confusions(matrices: dict, classes: list[str], path: Path, seeds: int = 1) -> None:
    """Confusion matrices (rows: actual, columns: predicted), summed over seeds, side by side."""
    names = list(matrices)
    figure, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        matrix = np.asarray(matrices[name])
        axis.imshow(matrix, cmap="Blues")
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, str(value), ha="center", va="center",
                      color="white" if value > matrix.max() / 2 else "black")
        axis.set_xticks(range(len(classes)), classes)
        axis.set_yticks(range(len(classes)), classes)
        axis.set_xlabel("predicted")
        axis.set_ylabel("actual")
        axis.set_title(f"{name} (summed over {seeds} seed{'s' if seeds != 1 else ''})", fontsize=9)
    _save(figure, path)
