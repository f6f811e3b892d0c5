"""Stage `speed`: the speed verdicts, from interleaved rounds of fresh processes.

Epoch times of training runs are not independent measurements (one run's epochs are autocorrelated and
share the machine's state of that hour), so they describe a run but decide nothing. Here every round runs
each framework once, in a fresh process, in an order rotated from round to round (A B C, B C A, C A B, …),
on the same shared batches: one warm-up epoch (tracing, compilation), then `speed.timed_epochs` timed
epochs of the framework's own training loop; then its saved model's batched inference and single-image
latency. The round is the unit of every verdict (stats.round_ratios): slow drift of the machine hits
both frameworks of a round alike and cancels in their ratio.

Writes speed/rounds.csv (every measurement, with the machine and the position in the round),
speed/verdicts.json (every pair's ratio, interval, Holm p, detectable ratio and sentence) and
metrics/speed.json (per framework the geometric mean over rounds, for `dvc exp show`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dlcompare import stats
from dlcompare.atomic import write_json, write_text
from dlcompare.errors import UserError
from dlcompare.machine import machine
from dlcompare.params import Params, load_params

FIGURES = {  # figure -> (what the sentences call it, higher is better)
    "train_images_per_s": ("training", True),
    "inference_images_per_s": ("batched inference", True),
    "latency_ms": ("single-image latency", False),
}


def measure(framework: str, params: Params, prepared: Path) -> dict:
    """One framework's figures for one round (in its own, fresh process)."""
    from dlcompare import frameworks
    from dlcompare.batches import EvalBatches, TrainBatches, to_float
    from dlcompare.evaluate import latency_ms
    from dlcompare.frameworks.base import TrainingSession
    from dlcompare import architectures
    from dlcompare.prepared import load_split

    s, t = params.speed, params.train
    x, y = load_split(prepared, "train")
    x_val, y_val = load_split(prepared, "val")
    x_test, _ = load_split(prepared, "test")
    train = t.model_copy(update={"epochs": 1 + s.timed_epochs, "warmup_fraction": 0.0})
    batches = TrainBatches(x[: s.train_images], y[: s.train_images], t.batch_size, 0, t.augment.flip, t.augment.shift)
    module = frameworks.load(framework, t.threads, t.precision)
    spec = architectures.from_params(params)
    implementation = module.Implementation(spec, train, seed=0)
    implementation.build(spec.initial_weights(0))
    with tempfile.TemporaryDirectory() as scratch:
        session = TrainingSession(train=train, seed=0, batches=batches, val_x=x_val[: t.batch_size],
                                  val_y=y_val[: t.batch_size], checkpoint_dir=Path(scratch) / "checkpoint")
        session.checkpoint_dir.mkdir()
        implementation.fit(session)
        timed = [session.history[epoch]["train_seconds"] for epoch in range(1, train.epochs)]
        with frameworks.native_stderr_hidden():
            implementation.save(Path(scratch) / "model")
        predict = module.load_predictor(Path(scratch) / "model", t.threads)
        test = EvalBatches(x_test[: s.inference_images], None, params.evaluate.batch_size)
        predict(test.batch(0))  # trace/compile outside the timed passes
        passes = []
        for _ in range(s.timed_epochs):
            started = time.perf_counter()
            for images in test:
                predict(images)
            passes.append(time.perf_counter() - started)
        latencies = latency_ms(predict, to_float(np.asarray(x_test[:1])), s.latency_calls)
    return {
        "train_images_per_s": batches.steps * batches.batch_size / statistics.median(timed),
        "inference_images_per_s": len(test.x) / statistics.median(passes),
        "latency_ms": statistics.median(latencies),
    }


def check_sizes(params: Params, prepared: Path) -> None:
    from dlcompare.prepared import load_info, load_split

    load_info(prepared, params.prepare.image_size)
    train_images = len(load_split(prepared, "train")[1])
    if min(params.speed.train_images, train_images) < params.train.batch_size:
        raise UserError(f"params.yaml: speed.train_images = {params.speed.train_images} (of {train_images} training "
                        f"images) is less than one batch of train.batch_size = {params.train.batch_size}; raise it")
    if len(load_split(prepared, "val")[1]) == 0:
        raise UserError("the validation split is empty; set prepare.val_fraction above 0")
    if len(load_split(prepared, "test")[1]) == 0:
        raise UserError(f"{prepared}: the test split is empty; set prepare.test_fraction above 0")


def one_round(framework: str, params_file: Path, prepared: Path, pythonpath: tuple[str, ...] = ()) -> dict:
    """One framework's figures, measured in a fresh process; `pythonpath` goes first on its import path
    (`dlcompare ab`: another revision's code, another version's packages)."""
    command = [sys.executable, "-m", "dlcompare.speed", framework, str(params_file), str(prepared)]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        where = f"PYTHONPATH={env['PYTHONPATH']} " if pythonpath else ""
        raise UserError(f"speed: measuring {framework} failed ({last}); run `{where}python -m dlcompare.speed {framework} "
                        f"{params_file} {prepared}` to see why")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_rounds(entries: list[tuple[str, str]], rounds: int, params_file: Path, prepared: Path,
               on_round=lambda row: None) -> pd.DataFrame:
    """Every (label, framework) once per round, fresh process each, order rotated by one per round.

    A label lets the same framework appear twice (the A/A check: `benchmarks/speed_aa.py`).
    """
    rows, where = [], machine()
    for round_index in range(rounds):
        shift = round_index % len(entries)
        for position, (label, framework) in enumerate(entries[shift:] + entries[:shift]):
            row = {"round": round_index, "position": position, "label": label, "framework": framework,
                   **one_round(framework, params_file, prepared), **where}
            rows.append(row)
            on_round(row)
    return pd.DataFrame(rows)


def verdicts(rounds: pd.DataFrame) -> dict:
    """Per figure: each label's summary over rounds and every pair's ratio verdict (rounds from one machine only)."""
    machines = rounds["host"].unique()
    if len(machines) > 1:
        raise UserError(f"speed/rounds.csv holds rounds from {len(machines)} machines; speed is compared on one: "
                        "re-run `dvc repro speed` on one machine")
    result = {}
    for figure, (what, higher_is_better) in FIGURES.items():
        table = rounds.pivot(index="round", columns="label", values=figure)[list(dict.fromkeys(rounds["label"]))]
        values = {label: table[label].tolist() for label in table.columns}
        pairs = stats.round_ratios(values, higher_is_better)
        for key, pair in pairs.items():
            a, b = key.split("_vs_")
            pair["sentence"] = stats.speed_sentence(what, a, b, pair, len(pairs))
        result[figure] = {"what": what, "higher_is_better": higher_is_better,
                          "frameworks": {label: stats.rounds_summary(v) for label, v in values.items()}, "pairs": pairs}
    return result


def speed(params: Params, params_file: Path = Path("params.yaml"), prepared: Path = Path("data/prepared"),
          rounds_file: Path = Path("speed/rounds.csv"), verdicts_file: Path = Path("speed/verdicts.json"),
          metrics_file: Path = Path("metrics/speed.json"), echo=print) -> dict:
    check_sizes(params, prepared)
    names = list(params.train.frameworks)
    started = time.perf_counter()

    def progress(row: dict) -> None:
        echo(f"speed round {row['round'] + 1}/{params.speed.rounds} {row['label']}: "
             f"{row['train_images_per_s']:.0f} images/s training, {row['inference_images_per_s']:.0f} batched, "
             f"{row['latency_ms']:.2f} ms latency")

    rounds = run_rounds([(name, name) for name in names], params.speed.rounds, params_file, prepared, progress)
    result = verdicts(rounds)
    result["cost_seconds"] = round(time.perf_counter() - started, 1)
    result["design"] = {**params.speed.model_dump(), "machine": machine()}
    write_text(rounds_file, rounds.round(4).to_csv(index=False, lineterminator="\n"))
    write_json(verdicts_file, result)
    write_json(metrics_file, {name: {"train_ips": round(result["train_images_per_s"]["frameworks"][name]["value"], 1),
                                     "infer_ips": round(result["inference_images_per_s"]["frameworks"][name]["value"], 1),
                                     "latency_ms": round(result["latency_ms"]["frameworks"][name]["value"], 3)}
                              for name in names})
    return result


if __name__ == "__main__":  # one framework, one round: `run_rounds` starts this in a fresh process
    framework, params_file, prepared = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(measure(framework, load_params(params_file), prepared)))
