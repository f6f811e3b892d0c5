"""compare end to end in temporary git + DVC repos on real photos.

PyTorch and JAX over three seeds (the framework-level statistics), and Keras vs low-level TensorFlow with
dropout off over two seeds: the same engine, whose runs come out identical, must read "no difference".
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import make_dvc_project, run_cli, run_tool, small_kaggle_zip

# pytest-xdist runs this module on one worker, so its trained and compared project is built once.
pytestmark = pytest.mark.xdist_group("compare")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("accuracy", "pairs", "time_breakdown", "curves", "throughput_memory", "confusion")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    source = small_kaggle_zip(base / "small.zip", per_class=60)
    project = make_dvc_project(base / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32},
        "model": {"plain_cnn": {"filters": [8, 16]}},
        "train": {"frameworks": ["pytorch", "jax"], "epochs": 2, "batch_size": 16, "seeds": [0, 1, 2]},
        "evaluate": {"latency_runs": 5, "bootstrap_samples": 500},
    })
    output = run_tool(["dvc", "repro"], project).stdout
    assert "Running stage 'compare'" in output
    return project


def test_compare_writes_statistics_for_every_framework_and_pair(compared):
    result = json.loads((compared / "reports" / "comparison.json").read_text())
    assert set(result["frameworks"]) == {"pytorch", "jax"}
    for entry in result["frameworks"].values():
        assert entry["seeds"] == 3 and entry["accuracy_ci_method"].startswith("seeds × test images")
        low, high = entry["accuracy_ci95"]
        assert 0 <= low <= entry["accuracy_mean"] <= high <= 1
        for key in ("train_images_per_s", "latency_ms", "inference_images_per_s"):
            speed = entry[key]  # the speed stage's rounds
            assert speed["ci95"][0] < speed["value"] < speed["ci95"][1] and speed["rounds"] == 2, key
        assert sum(entry["time_percent"].values()) == pytest.approx(100, abs=0.1)
        for key in ("epoch_median_s", "first_epoch_s", "peak_rss_mb", "params", "statements", "runtime",
                    "roc_auc_mean", "roc_auc_ci95", "accuracy_std", "time_s"):
            assert key in entry
        assert set(entry["time_s"]) == {"prepare", "data", "import", "build", "compile", "train", "evaluate"}
        for target, reached in entry["time_to_accuracy_s"].items():
            assert target in ("0.80", "0.85", "0.88") and reached["seeds"] == 3 and 0 <= reached["reached"] <= 3
            assert (reached["median"] is None) == (reached["reached"] == 0)
    pair = result["pairs"]["pytorch_vs_jax"]
    assert set(pair["per_seed"]) == {"0", "1", "2"}
    for seed in pair["per_seed"].values():
        assert 0 <= seed["mcnemar_p"] <= 1 and seed["b"] >= 0 and seed["c"] >= 0
    assert pair["framework_level"] and pair["p_holm"] == pair["p_value"]  # one pair: Holm changes nothing
    assert pair["verdict"].startswith(("no difference between", "no significant difference", "pytorch more accurate",
                                       "jax more accurate"))
    assert pair["significant"] == pair["verdict"].startswith(("pytorch more", "jax more"))
    assert pair["detectable_gap"] is None or pair["detectable_gap"] > 0
    for ratio in pair["speed"].values():
        assert ratio["ci95"][0] < ratio["ratio"] < ratio["ci95"][1] and ratio["rounds"] == 2
        assert ratio["sentence"].startswith(("pytorch is faster", "jax is faster", "pytorch and jax cannot"))
    rounds = (compared / "speed" / "rounds.csv").read_text().splitlines()
    assert len(rounds) == 1 + 2 * 2  # header, two frameworks in each of two rounds
    # Every run says where it trained and at which precision; one machine here, so the epoch rates are pooled.
    (host, machine), = result["machines"].items()
    assert len(machine["runs"]) == 6 and machine["cores"] >= 1 and machine["cpu"] and machine["gpus"]
    train = json.loads((compared / "metrics" / "train" / "jax-1.json").read_text())
    assert train["machine"]["host"] == host and train["precision"] == "float32"
    assert train["runtime"]["precision"] == "jax_default_matmul_precision float32"
    assert "peak_device_mb" not in train or train["machine"]["gpus"] != "none"  # a GPU figure only where one was used
    for entry in result["frameworks"].values():
        assert entry["epoch_images_per_s"] == next(iter(entry["epoch_images_per_s_by_machine"].values())) > 0


def test_every_figure_is_a_png_and_the_report_is_complete(compared):
    for name in FIGURES:
        data = (compared / "plots" / "compare" / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    report = (compared / "reports" / "comparison.md").read_text()
    assert "pytorch" in report and "jax" in report
    # "What could not be made equal" names the compared frameworks' own differences, and no others.
    assert "torch's global generator" in report and "jax-ml/jax#39741" in report and "SeedGenerator" not in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)
    verdict = json.loads((compared / "reports" / "comparison.json").read_text())["pairs"]["pytorch_vs_jax"]["verdict"]
    assert verdict in report
    for table_header in ("| framework | seeds |", "| framework | to 80% | to 85% | to 88% |", "| pair | difference", "| pair | seed | accuracy difference |",
                         "| framework | preprocessing"):
        header_at = report.index(table_header)
        rows = report[header_at:].split("\n\n")[0].splitlines()
        assert len(rows) >= 3, f"table {table_header!r} has no rows"
    for name in FIGURES:
        assert f"../plots/compare/{name}.png" in report
    assert "- **Runs trained on** " in report and ": all 6." in report and "- **Precision** (`train.precision`): float32." in report


def test_dvc_shows_the_headline_and_overlays_every_run(compared):
    details = json.loads((compared / "reports" / "comparison.json").read_text())
    shown = json.loads(run_tool(["dvc", "metrics", "show", "--json"], compared).stdout)
    files = shown[""]["data"] if "" in shown else next(iter(shown.values()))["data"]
    assert sorted(files) == ["metrics/compare.json", "metrics/speed.json"], "only the headlines are declared metrics"
    speed = files["metrics/speed.json"]["data"]
    assert set(speed) == {"pytorch", "jax"} and set(speed["jax"]) == {"train_ips", "infer_ips", "latency_ms"}
    headline = files["metrics/compare.json"]["data"]
    assert set(headline) == {"pytorch", "jax", "pytorch-vs-jax"}
    for name in ("pytorch", "jax"):
        entry = details["frameworks"][name]
        assert headline[name]["acc"] == round(entry["accuracy_mean"], 4)
        assert [headline[name]["ci_low"], headline[name]["ci_high"]] == [round(v, 4) for v in entry["accuracy_ci95"]]
        assert headline[name]["images_per_s"] == round(entry["epoch_images_per_s"], 1)
        assert speed[name]["train_ips"] == round(entry["train_images_per_s"]["value"], 1)
        assert set(headline[name]) == {"acc", "ci_low", "ci_high", "images_per_s", "peak_mb"}
    assert headline["pytorch-vs-jax"] == {"diff": round(details["pairs"]["pytorch_vs_jax"]["accuracy_diff"], 4),
                                          "significant": details["pairs"]["pytorch_vs_jax"]["significant"]}

    plots = json.loads(run_tool(["dvc", "plots", "show", "--json", "--split"], compared).stdout)
    assert not plots.get("errors"), plots.get("errors")
    assert all(f"plots/compare/{name}.png" in plots["data"] for name in FIGURES)
    runs = {f"{f}-{s}" for f in ("pytorch", "jax") for s in (0, 1, 2)}
    for plot_id in ("Validation accuracy per epoch, every run", "Test-set ROC curve, every run"):
        (rendered,) = plots["data"][plot_id]
        values = rendered["anchor_definitions"]["<DVC_METRIC_DATA>"]
        assert {row["run"] for row in values} == runs, plot_id  # all six runs on one axis
        assert rendered["content"]["encoding"]["color"]["field"] == "framework"
    confusion = plots["data"]["plots/eval/pytorch-0/predictions.csv"][0]["content"]["spec"]["encoding"]
    # As in confusion.png: columns are the predicted class, rows the actual one.
    assert confusion["x"]["field"] == "predicted" and confusion["y"]["field"] == "actual"


def test_a_missing_evaluation_is_a_clear_error_and_nothing_is_half_written(compared, tmp_path):
    import shutil

    project = tmp_path / "partial"
    shutil.copytree(compared, project, ignore=shutil.ignore_patterns(".dvc", ".git"))
    (project / "metrics" / "eval" / "jax-1.json").unlink()
    report_before = (project / "reports" / "comparison.md").read_text()
    json_before = (project / "metrics" / "compare.json").read_text()
    result = run_cli("compare", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "dlcompare: error: metrics/eval/jax-1.json is missing: run `dvc repro` (stage evaluate@jax-1) before compare"
    ]
    assert (project / "reports" / "comparison.md").read_text() == report_before
    assert (project / "metrics" / "compare.json").read_text() == json_before


def test_same_engine_with_dropout_off_reads_no_difference(tmp_path):
    """Keras on TensorFlow and low-level TensorFlow, dropout 0, two seeds: the runs match, and nothing is claimed."""
    source = small_kaggle_zip(tmp_path / "small.zip", per_class=60)
    project = make_dvc_project(tmp_path / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32},
        "model": {"plain_cnn": {"filters": [8, 16]}, "dropout": 0.0},
        "train": {"frameworks": ["keras", "tensorflow"], "epochs": 2, "batch_size": 16, "seeds": [0, 1]},
        "evaluate": {"latency_runs": 5, "bootstrap_samples": 200},
    })
    run_tool(["dvc", "repro"], project)
    pair = json.loads((project / "reports" / "comparison.json").read_text())["pairs"]["keras_vs_tensorflow"]
    assert pair["same_engine"] and not pair["significant"] and not pair["framework_level"]
    identical = all(seed["b"] == seed["c"] == 0 for seed in pair["per_seed"].values())
    assert pair["verdict"].startswith("no difference" if identical else "keras vs tensorflow: not decidable with 2 seed(s)")
    report = (project / "reports" / "comparison.md").read_text()
    assert pair["verdict"] in report
    assert "keras and tensorflow both run on TensorFlow's kernels" in report
    assert "more accurate" not in report


def test_one_framework_runs_to_the_end_with_a_one_framework_report(tmp_path):
    source = small_kaggle_zip(tmp_path / "small.zip", per_class=40)
    project = make_dvc_project(tmp_path / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32},
        "model": {"plain_cnn": {"filters": [8, 16]}},
        "train": {"frameworks": ["pytorch"], "epochs": 2, "batch_size": 16},
        "evaluate": {"latency_runs": 5, "bootstrap_samples": 200},
    })
    output = run_tool(["dvc", "repro"], project).stdout
    assert "a comparison needs a second framework" in output
    result = json.loads((project / "reports" / "comparison.json").read_text())
    assert list(result["frameworks"]) == ["pytorch"] and result["pairs"] == {}
    assert list(json.loads((project / "metrics" / "compare.json").read_text())) == ["pytorch"]
    report = (project / "reports" / "comparison.md").read_text()
    assert "A comparison needs a second framework" in report and "## Statistical tests" not in report
    assert not (project / "plots" / "compare" / "pairs.png").exists()
