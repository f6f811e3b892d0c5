"""The speed stage's design: rotated rounds of fresh processes, verdicts per round, one machine only."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from dlcompare import speed
from dlcompare.machine import machine
from dlcompare.errors import UserError


def test_rounds_rotate_the_order_so_every_framework_takes_every_position(monkeypatch):
    calls = []

    def fake_round(framework, params_file, prepared, pythonpath=()):
        calls.append(framework)
        return {"train_images_per_s": 100.0, "inference_images_per_s": 1000.0, "latency_ms": 1.0}

    monkeypatch.setattr(speed, "one_round", fake_round)
    names = ["a", "b", "c"]
    rounds = speed.run_rounds([(n, n) for n in names], 3, ROOT / "params.yaml", ROOT / "data" / "prepared")
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    positions = rounds.groupby("label")["position"].apply(sorted).to_dict()
    assert positions == {name: [0, 1, 2] for name in names}
    assert set(rounds["host"]) == {machine()["host"]}


def rounds_table(values: dict[str, list[float]], hosts=None) -> pd.DataFrame:
    rows = []
    for label, series in values.items():
        for index, value in enumerate(series):
            rows.append({"round": index, "position": 0, "label": label, "framework": label,
                         "train_images_per_s": value, "inference_images_per_s": 2 * value, "latency_ms": 100 / value,
                         "host": (hosts or {}).get(index, "h1"), "cpu": "x", "cores": 2})
    return pd.DataFrame(rows)


def test_verdicts_pair_the_frameworks_round_by_round():
    # Drift moves both frameworks together from round to round; within a round b is 10 % slower.
    drift = [100, 80, 120, 90, 110, 95]
    table = rounds_table({"a": drift, "b": [0.9 * v * (1 + 0.01 * (-1) ** i) for i, v in enumerate(drift)]})
    result = speed.verdicts(table)
    pair = result["train_images_per_s"]["pairs"]["a_vs_b"]
    assert pair["significant"] and 1.08 < pair["ratio"] < 1.13
    assert pair["sentence"].startswith("a is faster than b in training")
    latency = result["latency_ms"]["pairs"]["a_vs_b"]
    assert latency["significant"] and latency["sentence"].startswith("a is faster than b in single-image latency")
    summary = result["train_images_per_s"]["frameworks"]["a"]
    assert summary["rounds"] == 6 and summary["ci95"][0] < summary["value"] < summary["ci95"][1]


def test_rounds_from_two_machines_are_refused_not_pooled():
    table = rounds_table({"a": [1.0, 2.0], "b": [1.0, 2.0]}, hosts={1: "h2"})
    with pytest.raises(UserError, match="2 machines"):
        speed.verdicts(table)


def test_speed_stage_reruns_for_code_versions_model_and_design_not_for_seeds_or_epochs():
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["speed"]
    assert {"speed", "model", "train.frameworks", "train.batch_size", "prepare.image_size"} <= set(stage["params"])
    assert not {"train.seeds", "train.epochs", "train"} & set(stage["params"])
    assert "src/dlcompare/frameworks/deps" in stage["deps"] and "src/dlcompare/speed.py" in stage["deps"]
