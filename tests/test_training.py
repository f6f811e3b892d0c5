"""train / evaluate / predict through the CLI on real photos: metrics, determinism, resume, bad params."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, KAGGLE_10K, env_with_venv, run_cli, tiny_project
from dlcompare.frameworks import NAMES as FRAMEWORKS
from dlcompare.frameworks.base import learning_rate
from dlcompare.params import TrainParams

TIMING_KEYS = {"seconds", "images_per_s", "peak_rss_mb"}


def train_and_evaluate(project, framework, seed=0):
    run_cli("train", "--framework", framework, "--seed", str(seed), cwd=project, check=True)
    run_cli("evaluate", "--framework", framework, "--seed", str(seed), cwd=project, check=True)
    run = f"{framework}-{seed}"
    return (
        json.loads((project / "metrics" / "train" / f"{run}.json").read_text()),
        json.loads((project / "metrics" / "eval" / f"{run}.json").read_text()),
        pd.read_csv(project / "plots" / "eval" / run / "predictions.csv"),
    )


def without_timings(metrics: dict) -> dict:
    kept = {key: value for key, value in metrics.items() if key not in TIMING_KEYS | {"latency_ms_p50", "latency_ms_p95"}}
    if "time_to_accuracy" in kept:  # seconds where a threshold was reached: only whether it was is reproducible
        kept["time_to_accuracy"] = {level: seconds is not None for level, seconds in kept["time_to_accuracy"].items()}
    return kept


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_run_writes_every_metric_and_plot(tmp_path, tiny_prepared, framework):
    project = tiny_project(tmp_path / "p", tiny_prepared)
    train_metrics, eval_metrics, predictions = train_and_evaluate(project, framework)
    assert {"epochs", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s",
            "peak_rss_mb", "params", "flops_per_image", "statements", "runtime"} <= set(train_metrics)
    assert set(train_metrics["seconds"]) >= {"data", "build", "first_epoch", "epoch_median", "train"}
    assert train_metrics["epochs"] == 2 and train_metrics["statements"]["model"] > 20
    assert list(train_metrics["time_to_accuracy"]) == ["0.80", "0.85", "0.88"]
    from dlcompare.frameworks import REGISTRY, pinned_versions

    pins = pinned_versions()
    # The installed build is recorded as it is (torch's "+cpu" local label included); its release is the pinned one.
    recorded = {package: version.split("+")[0] for package, version in train_metrics["versions"].items()}
    assert recorded == {package: pins[package] for package in REGISTRY[framework].packages}
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "n_test", "seconds",
            "latency_ms_p50", "latency_ms_p95", "images_per_s"} <= set(eval_metrics)
    # The metrics are what the per-image predictions say.
    test_rows = pd.read_csv(project / "data" / "prepared" / "manifest.csv").query("split == 'test'")
    assert predictions["path"].tolist() == test_rows["path"].tolist()
    assert predictions["actual"].tolist() == test_rows["label"].tolist()
    assert eval_metrics["n_test"] == len(predictions)
    assert eval_metrics["accuracy"] == pytest.approx((predictions["actual"] == predictions["predicted"]).mean())
    assert ((predictions["probability"] > 0.5) == (predictions["predicted"] == "dog")).all()
    curves = project / "dvclive" / f"{framework}-0" / "plots" / "metrics"
    for name in ("train/loss.tsv", "train/accuracy.tsv", "val/loss.tsv", "val/accuracy.tsv"):
        assert len((curves / name).read_text().splitlines()) == 1 + 2, name
    # dvclive through its public API: its own summary (last values, last step), and no dvc.yaml or report of its own.
    live_dir = project / "dvclive" / f"{framework}-0"
    assert json.loads((live_dir / "metrics.json").read_text())["step"] == 1
    assert not (live_dir / "dvc.yaml").exists() and not list(live_dir.glob("report.*"))
    roc = pd.read_csv(project / "plots" / "roc" / f"{framework}-0.csv")
    assert roc["fpr"].iloc[-1] == 1.0 and roc["tpr"].iloc[-1] == 1.0


def epoch_finished(project, framework) -> bool:
    return (project / "checkpoints" / f"{framework}-0" / "history.json").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_same_params_give_the_same_run_even_when_killed_and_resumed(tmp_path, tiny_prepared, framework):
    """A run trained straight through and one killed after an epoch and resumed from its checkpoint give the same
    metrics and predictions (the killed run's first epochs came from a fresh start with the same params, so this is
    also the same-params-same-metrics check); another seed gives another run."""
    longer = {"train": {"epochs": 5}, "model": {"plain_cnn": {"filters": [16, 32]}}}
    reference = train_and_evaluate(tiny_project(tmp_path / "whole", tiny_prepared, longer), framework)

    project = tiny_project(tmp_path / "killed", tiny_prepared, longer)
    process = subprocess.Popen([str(BIN / "dlcompare"), "train", "-f", framework, "-s", "0"], cwd=project,
                               env=env_with_venv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not epoch_finished(project, framework) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    history = json.loads((project / "checkpoints" / f"{framework}-0" / "history.json").read_text())
    assert 1 <= len(history) < 5

    resumed = run_cli("train", "-f", framework, "-s", "0", cwd=project, check=True)
    done = int(re.search(rf"resuming {framework}-0 from its last checkpoint .*\((\d+) of 5 epochs recorded\)",
                         resumed.stdout).group(1))
    assert done == len(history)
    # Only the epochs it trains are printed (none replayed), each but the last with the time left. A kill between an
    # epoch's history entry and its checkpoint means that epoch is trained (and printed) again.
    printed = [int(epoch) for epoch, _ in re.findall(rf"^{framework}-0 epoch (\d+)/5: .*\((.*)\)$", resumed.stdout, re.MULTILINE)]
    assert printed in (list(range(done + 1, 6)), list(range(done, 6)))
    printed_timings = re.findall(rf"^{framework}-0 epoch (\d+)/5: .*\((.*)\)$", resumed.stdout, re.MULTILINE)
    assert all(("left" in timing) == (int(epoch) < 5) for epoch, timing in printed_timings)
    run_cli("evaluate", "-f", framework, "-s", "0", cwd=project, check=True)
    train_metrics = json.loads((project / "metrics" / "train" / f"{framework}-0.json").read_text())
    eval_metrics = json.loads((project / "metrics" / "eval" / f"{framework}-0.json").read_text())
    predictions = pd.read_csv(project / "plots" / "eval" / f"{framework}-0" / "predictions.csv")
    if train_metrics["runtime"]["deterministic"]:
        assert without_timings(train_metrics) == without_timings(reference[0])
        assert without_timings(eval_metrics) == without_timings(reference[1])
        assert predictions.equals(reference[2])
    else:  # multi-threaded XLA on the CPU (jax-ml/jax#39741): the run says so, and differs only in rounding
        np.testing.assert_allclose(predictions["probability"], reference[2]["probability"], atol=1e-3)
        assert train_metrics["val_loss"] == pytest.approx(reference[0]["val_loss"], abs=1e-3)
    curve = (project / "dvclive" / f"{framework}-0" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text()
    assert len(curve.splitlines()) == 1 + 5

    other_seed = train_and_evaluate(tiny_project(tmp_path / "seed-1", tiny_prepared, longer), framework, seed=1)
    assert without_timings(other_seed[0]) != without_timings(reference[0])


def test_checkpoint_of_other_params_or_code_is_not_resumed(tmp_path, tiny_prepared, monkeypatch):
    project = tiny_project(tmp_path / "p", tiny_prepared)
    run_cli("train", "-f", "tensorflow", "-s", "0", cwd=project, check=True)
    assert "(2 of 2 epochs recorded)" in run_cli("train", "-f", "tensorflow", "-s", "0", cwd=project, check=True).stdout
    other_rate = TrainParams().learning_rate * 2  # not the default, whatever the default is
    changed = tiny_project(tmp_path / "q", tiny_prepared, {"train": {"learning_rate": other_rate}})
    shutil.copytree(project / "checkpoints", changed / "checkpoints")
    result = run_cli("train", "-f", "tensorflow", "-s", "0", cwd=changed, check=True)
    assert "resuming" not in result.stdout

    from dlcompare import frameworks, train as train_module
    from dlcompare.params import load_params

    params = load_params(project / "params.yaml")
    before = train_module._fingerprint(params, "tensorflow", 0, project / "data" / "prepared")
    monkeypatch.setattr(frameworks, "TRAINING_CODE", frameworks.TRAINING_CODE[:-1])
    assert train_module._fingerprint(params, "tensorflow", 0, project / "data" / "prepared") != before


def test_learning_rate_warms_up_linearly_then_follows_the_whole_cosine():
    warm = TrainParams(epochs=6, learning_rate=0.01, warmup_fraction=0.34, min_learning_rate=0.001)
    assert warm.warmup_epochs == 2
    assert [TrainParams(epochs=n, warmup_fraction=0.125).warmup_epochs for n in (1, 2, 8, 16, 30)] == [0, 0, 1, 2, 3]
    rates = [learning_rate(warm, epoch) for epoch in range(6)]
    assert rates[:3] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])
    # After the warm-up: the same cosine a run of the remaining epochs would have, never down to the minimum.
    rest = TrainParams(epochs=4, learning_rate=0.01, min_learning_rate=0.001)
    assert rates[2:] == pytest.approx([learning_rate(rest, epoch) for epoch in range(4)])
    assert all(a > b for a, b in zip(rates[2:], rates[3:])) and rates[-1] > 0.001
    constant = TrainParams(epochs=4, learning_rate=0.01, warmup_fraction=0.25, lr_schedule="constant")
    assert [learning_rate(constant, epoch) for epoch in range(4)] == pytest.approx([0.005, 0.01, 0.01, 0.01])


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"train": {"frameworks": ["keras", "caffe"]}}, "train.frameworks"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"batch_size": -1}}, "train.batch_size"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate"),
        ({"train": {"seeds": []}}, "train.seeds"),
        ({"prepare": {"image_size": 32}, "model": {"plain_cnn": {"filters": [8, 8, 8, 8, 8, 8]}}}, "prepare.image_size"),
        ({"model": {"dropout": 1.5}}, "model.dropout"),
        ({"model": {"preset": "vgg"}}, "model.preset"),
        ({"model": {"plain_cnn": {"kernel_size": 4}}}, "model.plain_cnn.kernel_size"),
        ({"prepare": {"image_size": 8}, "model": {"preset": "resnet", "resnet": {"widths": [8, 8, 8, 8, 8]}}}, "model.resnet.widths"),
        ({"train": {"warmup_fraction": 1.0}}, "train.warmup_fraction"),
    ],
)
def test_bad_params_fail_at_once_naming_the_key(tmp_path, tiny_prepared, overrides, key):
    project = tiny_project(tmp_path / "p", tiny_prepared, overrides)
    started = time.monotonic()
    result = run_cli("train", "-f", "keras", "-s", "0", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert time.monotonic() - started < 10, "validation must happen before any framework is imported"
    assert not (project / "metrics").exists()


def test_unknown_framework_option_and_missing_model_are_one_line_errors(tmp_path, tiny_prepared):
    project = tiny_project(tmp_path / "p", tiny_prepared)
    result = run_cli("train", "-f", "caffe", "-s", "0", cwd=project)
    assert result.returncode == 1 and "caffe" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli("evaluate", "-f", "keras", "-s", "0", cwd=project)
    assert result.returncode == 1 and "no trained model" in result.stderr and "Traceback" not in result.stderr


def test_predict_prints_each_models_label_and_rejects_bad_images(tmp_path, tiny_prepared):
    project = tiny_project(tmp_path / "p", tiny_prepared, {"train": {"epochs": 1}})
    trained = ("keras", "keras-jax", "pytorch")  # two Keras backends: predict must keep them apart
    for framework in trained:
        run_cli("train", "-f", framework, "-s", "0", cwd=project, check=True)
    photo = tmp_path / "dog.jpg"
    with zipfile.ZipFile(KAGGLE_10K) as archive:
        photo.write_bytes(archive.read("train/dog.4321.jpg"))
    result = run_cli("predict", str(photo), cwd=project, check=True)
    header, *lines = result.stdout.strip().splitlines()
    assert header == "image\tmodel\tlabel\tprobability_of_label"
    rows = [line.split("\t") for line in lines]
    assert [row[1] for row in rows] == sorted(f"{framework}-0" for framework in trained)
    assert all(row[2] in {"cat", "dog"} and 0.5 <= float(row[3]) <= 1.0 for row in rows)
    timings = re.findall(r"^(\S+): loaded in [\d.]+ s .*predicted 1 image\(s\) in ([\d.]+) s$", result.stderr, re.MULTILINE)
    assert sorted(run for run, _ in timings) == sorted(f"{framework}-0" for framework in trained), result.stderr

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    for bad, message in ((tmp_path / "missing.jpg", "no such image file"), (broken, "cannot be read as an image")):
        result = run_cli("predict", str(bad), cwd=project)
        assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
