"""reports/comparison.md: the report a reviewer reads, generated from the numbers.

Every sentence that states a finding is built from a computed value; the only
fixed prose is the description of the method and of what cannot be equalised.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from dlcompare.atomic import write_text
from dlcompare.frameworks import FIT_TOLERANCE, REGISTRY, STEP_TOLERANCE, runtime
from dlcompare.machine import available_cores, cpu_model
from dlcompare.plots import PHASE_LABELS, PHASES
from dlcompare import architectures, stats

PAPER = {"TensorFlow": 84.3, "Keras": 83.05}  # the original study: one run per framework, test accuracy in %


def not_equal(compared: list[str]) -> list[str]:
    """What the fairness protocol cannot equalise, for the frameworks in this report (from the registry)."""
    notes = [note for name in compared for note in REGISTRY[name].notes]
    return [
        "Kernel numerics: each engine orders and fuses its float32 arithmetic its own way. The equivalence tests bound "
        f"the effect on this model: every framework within {_exponent(STEP_TOLERANCE['atol'])} of low-level TensorFlow "
        f"after three optimiser steps and within {_exponent(FIT_TOLERANCE['atol'])} after a three-epoch fit; longer runs "
        "are not compared weight by weight.",
        *dict.fromkeys(notes),  # in order, each once (the Keras backends share one note)
    ]


def _exponent(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


def _effort(statements: dict) -> str:
    return f"{statements['model']} + {statements['training_loop']} (+{statements['adapters']})"


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def _versions() -> str:
    found = []
    for name in ("numpy", "dvc", "dvclive"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join([f"Python {platform.python_version()}", *found])


def _runtime(name: str, entry: dict) -> str:
    r = entry["runtime"]
    versions = ", ".join(f"{package} {version}" for package, version in entry["versions"].items())
    precision = f", float32 arithmetic: {r['precision']}" if "precision" in r else ""  # runs from before it was recorded lack it
    return (f"{versions}; threads intra-op {r['intra_op']}, inter-op {r['inter_op']}, GPUs {r['gpus']}, "
            f"bitwise deterministic {'yes' if r['deterministic'] else 'no'}{precision}")


def _machines(result: dict) -> list[str]:
    """Where the runs trained: each machine and its runs; with more than one, why no run timing is pooled."""
    def described(host: str, m: dict) -> str:
        return f"{m['cpu']}, {m['cores']} cores, GPUs: {m['gpus']} (host {host})"

    machines = result["machines"]
    if len(machines) == 1:
        (host, m), = machines.items()
        return [f"- **Runs trained on** {described(host, m)}: all {len(m['runs'])}."]
    return ([f"- **Runs trained on {len(machines)} machines**, so their epoch rates are given per machine and none is "
             "pooled or compared across frameworks (the speed verdicts come from the speed stage, on one machine):"]
            + [f"  - {described(host, m)}: {', '.join(m['runs'])}." for host, m in machines.items()])


def _epoch_rate(entry: dict) -> str:
    if entry["epoch_images_per_s"] is not None:
        return f"{entry['epoch_images_per_s']:,.0f}"
    return "; ".join(f"{rate:,.0f} (host {host})" for host, rate in entry["epoch_images_per_s_by_machine"].items())


def _speed(per_framework: dict, pairs: dict, figure: str) -> list[str]:
    """The framework with the best geometric mean over rounds against each other one (the speed stage's sentences)."""
    higher_is_better = figure != "latency_ms"
    ranked = sorted(per_framework, key=lambda n: per_framework[n][figure]["value"], reverse=higher_is_better)
    best = ranked[0]
    return [pairs[f"{best}_vs_{other}" if f"{best}_vs_{other}" in pairs else f"{other}_vs_{best}"]["speed"][figure]["sentence"]
            for other in ranked[1:]]


def _with_interval(entry: dict, digits: int = 0) -> str:
    """A speed figure with its interval over rounds, or the number of rounds when there is no interval."""
    if entry["ci95"] is None:
        return f"{entry['value']:,.{digits}f} (no interval: {entry['rounds']} round{'s' if entry['rounds'] != 1 else ''})"
    low, high = entry["ci95"]
    return f"{entry['value']:,.{digits}f} [{low:,.{digits}f}, {high:,.{digits}f}]"


def _same_engine(a: str, b: str, pair: dict, epochs: int) -> str:
    """What the runs show about two frameworks on one engine, from their per-seed disagreements."""
    disagreements = [entry["b"] + entry["c"] for entry in pair["per_seed"].values()]
    low, high = min(disagreements), max(disagreements)
    count = f"{low}" if low == high else f"{low}–{high}"
    if high == 0:
        return (f"- **Same engine**: {a} and {b} both run on {runtime(REGISTRY[a].runtime).DISPLAY_NAME}'s kernels and, seed for "
                "seed, predicted every test image alike.")
    return (f"- **Same engine**: {a} and {b} both run on {runtime(REGISTRY[a].runtime).DISPLAY_NAME}'s kernels, yet with the same "
            f"seed their trained models disagree on {count} test images per seed: their random streams (dropout masks) "
            f"and float-level differences, bounded by the equivalence tests over three steps and three epochs, "
            f"compound over {epochs} epoch{'s' if epochs != 1 else ''}.")


def write_report(path: Path, result: dict, data: dict, params, figures_dir: Path) -> None:
    per_framework, pairs, n_test = result["frameworks"], result["pairs"], result["n_test"]
    names = list(per_framework)
    seeds = len(result["seeds"])
    figures = Path(os.path.relpath(figures_dir, path.parent))
    t = params.train
    claimed = [pair for pair in pairs.values() if pair["significant"]]
    lines = [
        f"# {', '.join(names)} on Dogs vs Cats: comparison report",
        "",
        "_Generated by `dlcompare compare` from this pipeline's metrics; re-run `dvc repro` to update it, do not edit it._",
        "",
        "## Findings",
        "",
    ]
    if not pairs:
        (only, e), = per_framework.items()
        low, high = e["accuracy_ci95"]
        lines.append(f"- **Accuracy**: {only} {_percent(e['accuracy_mean'])}, 95 % CI {100 * low:.2f}–{100 * high:.2f} % "
                     f"({e['accuracy_ci_method']}). A comparison needs a second framework: add one to `train.frameworks`.")
    elif seeds < stats.MIN_SEEDS_FOR_FRAMEWORK_CLAIM:
        lines.append(f"- **Accuracy**: with {seeds} seed{'s' if seeds != 1 else ''} per framework no claim about the "
                     f"frameworks can be made: too few runs to separate the framework from the seed; a framework-level answer "
                     f"needs at least {stats.MIN_SEEDS_FOR_FRAMEWORK_CLAIM} seeds (`dvc exp run -S 'train.seeds=[0,1,2]'`). "
                     "The differences between these trained models are in the table and figure below.")
    elif claimed:
        lines.append(f"- **Accuracy**: {len(claimed)} of {len(pairs)} pairs differ significantly (Holm-corrected, "
                     f"{seeds} seeds × {n_test:,} test images):")
        lines += [f"  - {pair['verdict']}." for pair in claimed]
    else:
        widest = max(pairs, key=lambda key: abs(pairs[key]["accuracy_diff"]))
        scope = f"any of the {len(pairs)} pairs" if len(pairs) > 1 else "the pair"
        detectable = [pair["detectable_gap"] for pair in pairs.values() if pair["detectable_gap"] is not None]
        power = (f"; with {seeds} seeds this design detects gaps of {100 * min(detectable):.2f}"
                 + (f"–{100 * max(detectable):.2f}" if max(detectable) > min(detectable) + 5e-5 else "")
                 + f" points or more with {100 * stats.POWER:.0f} % power, smaller ones could go unseen") if detectable else ""
        lines.append(f"- **Accuracy**: no significant difference in {scope} ({seeds} seeds × {n_test:,} test images"
                     f"{', Holm-corrected' if len(pairs) > 1 else ''}); the largest measured gap is "
                     f"{widest.replace('_vs_', ' − ')} = {100 * pairs[widest]['accuracy_diff']:+.2f} points{power}.")
    for key, pair in pairs.items():
        if pair["same_engine"]:
            lines.append(_same_engine(*key.split("_vs_"), pair, t.epochs))
    design = result["speed_design"]
    steady = "every epoch after the first" if t.epochs > 1 else "the only epoch (one epoch has no steady state)"
    rounds = (f"{design['rounds']} interleaved rounds, each framework in a fresh process per round, order rotated; "
              "the round is the unit")
    if pairs:
        for figure, title in (("train_images_per_s", "Training speed"), ("inference_images_per_s", "Batched inference"),
                              ("latency_ms", "Single-image latency")):
            lines.append(f"- **{title}** ({rounds}):")
            lines += [f"  - {line}." for line in _speed(per_framework, pairs, figure)]
    else:
        (only, e), = per_framework.items()
        lines.append(f"- **Speed** ({rounds}): {only} trains at {_with_interval(e['train_images_per_s'])} images/s "
                     f"(geometric mean, 95 % CI) and answers one image in {_with_interval(e['latency_ms'], 2)} ms.")
    lines += [
        "- **Coding effort** (statements in the framework's file: its model + its training loop; in parentheses, the "
        "adapters to dlcompare's harness): "
        + ", ".join(f"{name} {_effort(e['statements'])}" for name, e in per_framework.items()) + ".",
        "",
        "## Setup",
        "",
        f"- **Data**: {data['info']['source']} ({data['info']['layout']} layout): {data['files_seen']:,} files seen, "
        f"{data['images_kept']:,} kept, dropped: "
        + (", ".join(f"{reason} {count}" for reason, count in data["dropped"].items()) or "none") + ".",
        "- **Split** (stratified, seed " + str(params.prepare.seed) + "): "
        + "; ".join(f"{split} " + ", ".join(f"{c} {n:,}" for c, n in counts.items()) for split, counts in data["split"].items())
        + f". Test images: {n_test:,}.",
        f"- **Images**: {params.prepare.image_size}×{params.prepare.image_size} RGB ({params.prepare.resize}), scaled to [0, 1].",
        f"- **Model**: {architectures.from_params(params).description()}",
        f"- **Training**: {t.epochs} epoch{'s' if t.epochs != 1 else ''}, batch {t.batch_size}, Adam (learning rate {t.learning_rate}"
        f"{f' after {t.warmup_epochs} linear warm-up epochs' if t.warmup_epochs else ''}, {t.lr_schedule} "
        f"schedule towards {t.min_learning_rate}, β1 {t.adam_beta_1}, β2 {t.adam_beta_2}, ε {t.adam_epsilon}), augmentation: "
        f"{'horizontal flip, ' if t.augment.flip else ''}shift up to {t.augment.shift:.0%}; seeds {list(result['seeds'])}; "
        "identical initial weights and batches for every framework.",
        f"- **Platform** (of `compare`): {cpu_model()}, {available_cores()} cores; {_versions()}. Speed rounds ran on "
        f"{design['machine']['cpu']}, {design['machine']['cores']} cores (host {design['machine']['host']}); "
        f"{design['rounds']} rounds of {design['train_images']:,} training images × {design['timed_epochs']} timed "
        f"epoch(s) after a warm-up epoch, {design['inference_images']:,} test images per batched pass, "
        f"{design['latency_calls']} latency calls; {result['speed_cost_seconds'] / 60:.1f} min in all.",
        *_machines(result),
        f"- **Precision** (`train.precision`): {t.precision}.",
        *[f"- **{name}**: {_runtime(name, entry)}." for name, entry in per_framework.items()],
        "",
        "## Results",
        "",
        "Test accuracy and ROC AUC: means over the seeds; first epoch, memory and the runs' epoch speed: medians over "
        "the seeds (descriptions of these runs, no interval). Train images/s, latency and inference images/s: the "
        f"speed stage's geometric means over its interleaved rounds. Runs' epochs: {steady}, every seed. 95 % intervals in brackets. Accuracy intervals: "
        + next(iter(per_framework.values()))["accuracy_ci_method"]
        + "; ROC AUC intervals: bootstrap over test images; speed intervals: t over the rounds.",
        "",
        "| framework | seeds | test accuracy | 95 % CI | ROC AUC | train images/s | runs' epochs (images/s) "
        "| first epoch (s) | peak memory (MB) | latency (ms) | inference images/s | parameters | statements: model + loop (+adapters) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, e in per_framework.items():
        low, high = e["accuracy_ci95"]
        lines.append(
            f"| {name} | {e['seeds']} | {_percent(e['accuracy_mean'])} | {100 * low:.2f}–{100 * high:.2f} % | "
            f"{e['roc_auc_mean']:.4f} [{e['roc_auc_ci95'][0]:.4f}, {e['roc_auc_ci95'][1]:.4f}] | {_with_interval(e['train_images_per_s'])} | "
            f"{_epoch_rate(e)} | {e['first_epoch_s']:.1f} | "
            f"{e['peak_rss_mb']:,.0f} | {_with_interval(e['latency_ms'], 2)} | {_with_interval(e['inference_images_per_s'])} | "
            f"{e['params']:,} | {_effort(e['statements'])} |"
        )
    lines += _time_to_accuracy_section(per_framework, sum(data["split"]["val"].values()))
    if pairs:
        lines += _tests_section(pairs)
    lines += _time_section(per_framework)
    lines += ["## Figures", ""]
    for name, title in (("accuracy", "Test accuracy (the paper's Chart 3, with intervals)"),
                        ("pairs", "Accuracy difference of every pair"), ("time_breakdown", "Time per phase"),
                        ("curves", "Training and validation curves"), ("throughput_memory", "Throughput, latency and memory"),
                        ("confusion", "Confusion matrices (summed over seeds)")):
        if name != "pairs" or pairs:
            lines += [f"### {title}", "", f"![{title}]({(figures / f'{name}.png').as_posix()})", ""]
    lines += _paper_section(per_framework, n_test)
    lines += ["## What could not be made equal", "", *[f"- {item}" for item in not_equal(names)], ""]
    write_text(path, "\n".join(lines))


def _time_to_accuracy_section(per_framework: dict, n_val: int) -> list[str]:
    targets = list(next(iter(per_framework.values()))["time_to_accuracy_s"])
    top = float(targets[-1])
    noise = 100 * 1.96 * (top * (1 - top) / n_val) ** 0.5
    lines = ["", "Time to accuracy: training seconds (first epoch's compile included, validation excluded) until the "
             "validation accuracy first reached each level; median over the seeds that reached it. Each time is one "
             f"crossing of a noisy curve: one epoch's accuracy on {n_val:,} validation images is uncertain by "
             f"±{noise:.1f} points (95 %) near {top:.0%}, so these times describe these runs and rank nothing "
             "(the speed verdicts are above).", "",
             "| framework | " + " | ".join(f"to {float(t):.0%}" for t in targets) + " |",
             "| --- | " + " | ".join("---:" for _ in targets) + " |"]
    for name, e in per_framework.items():
        cells = []
        for target in targets:
            entry = e["time_to_accuracy_s"][target]
            if entry["median"] is None:
                cells.append(f"not reached ({entry['seeds']} seed{'s' if entry['seeds'] != 1 else ''})")
            else:
                some = f" ({entry['reached']} of {entry['seeds']} seeds)" if entry["reached"] < entry["seeds"] else ""
                cells.append(f"{entry['median']:,.1f} s{some}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _tests_section(pairs: dict) -> list[str]:
    method = next(iter(pairs.values()))["method"]
    lines = ["", "## Statistical tests", "",
              f"Accuracy difference of each pair (row − column in the matrix figure): {method}; "
              + (f"p-values Holm-corrected over the {len(pairs)} pairs." if len(pairs) > 1 else "one pair, so no correction."), "",
              "| pair | difference (points) | 95 % CI | p | Holm p | CI at Holm's level | detectable gap (80 % power) "
              "| verdict |", "| --- | ---: | --- | ---: | ---: | --- | ---: | --- |"]
    for key, pair in pairs.items():
        low, high = pair["accuracy_diff_ci95"]
        holm_low, holm_high = pair["accuracy_diff_ci_holm"]
        gap = "n/a" if pair["detectable_gap"] is None else f"{100 * pair['detectable_gap']:.2f}"
        lines.append(f"| {key.replace('_vs_', ' − ')} | {100 * pair['accuracy_diff']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] | "
                     f"{stats.format_p(pair['p_value'])} | {stats.format_p(pair['p_holm'])} | "
                     f"{100 * pair['holm_level']:.2f} %: [{100 * holm_low:+.2f}, {100 * holm_high:+.2f}] | {gap} | {pair['verdict']} |")
    lines += ["", "Single trained models, seed by seed (exact McNemar on the discordant test images; a description of "
              "these models, not a test of the frameworks):", "",
              "| pair | seed | accuracy difference | only first right (b) | only second right (c) | exact McNemar p |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, pair in pairs.items():
        for seed, entry in pair["per_seed"].items():
            lines.append(f"| {key.replace('_vs_', ' − ')} | {seed} | {100 * entry['accuracy_diff']:+.2f} points | {entry['b']} | "
                         f"{entry['c']} | {stats.format_p(entry['mcnemar_p'])} |")
    return lines


def _time_section(per_framework: dict) -> list[str]:
    lines = ["", "## Time per phase (the paper's Charts 1–2)", "",
             "| framework | " + " | ".join(PHASE_LABELS[p] for p in PHASES) + " | total |",
             "| --- | " + " | ".join("---:" for _ in PHASES) + " | ---: |"]
    for name, e in per_framework.items():
        cells = [f"{e['time_s'][p]:,.1f} s ({e['time_percent'][p]:.1f} %)" for p in PHASES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(e['time_s'].values()):,.1f} s |")
    return lines + ["", "Medians over seeds. Preprocessing is shared (prepare runs once for all frameworks); the first-epoch "
                    "overhead is the first epoch's training time minus the median later epoch; training includes per-epoch "
                    "validation.", ""]


def _paper_section(per_framework: dict, n_test: int) -> list[str]:
    paper_gap = abs(PAPER["TensorFlow"] - PAPER["Keras"])
    low, high = stats.binomial_ci(int(round(0.84 * n_test)), n_test)
    half_width = 100 * (high - low) / 2
    return [
        "## The paper, for context",
        "",
        f"The original study reported one run per framework: TensorFlow 84.3 %, Keras 83.05 %, a gap of {paper_gap:.2f} points. "
        f"With {n_test:,} test images, one run's accuracy near 84 % is uncertain by ±{half_width:.2f} points (95 % binomial interval) "
        f"from the test sample alone, before any seed-to-seed variation; a {paper_gap:.2f}-point gap between two single runs is "
        + ("smaller than that uncertainty." if paper_gap < half_width else "larger than that uncertainty, but one seed per framework cannot separate framework from seed."),
        "Here: " + ", ".join(f"{name} {_percent(e['accuracy_mean'])}" for name, e in per_framework.items()) + ".",
        "",
    ]
