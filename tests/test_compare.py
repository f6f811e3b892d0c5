"""compare end to end in a temporary git + DVC repo: two engines (PyTorch, JAX) x two seeds on real photos."""

from __future__ import annotations

import json
import re

import pytest

from conftest import make_dvc_project, run_cli, run_tool, small_kaggle_zip

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("accuracy", "time_breakdown", "curves", "throughput_memory", "confusion")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    source = small_kaggle_zip(base / "small.zip", per_class=60)
    project = make_dvc_project(base / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32},
        "model": {"filters": [8, 16]},
        "train": {"frameworks": ["pytorch", "jax"], "epochs": 2, "batch_size": 16, "seeds": [0, 1]},
        "evaluate": {"latency_runs": 5, "bootstrap_samples": 500},
    })
    output = run_tool(["dvc", "repro"], project).stdout
    assert "Running stage 'compare'" in output
    return project


def test_compare_writes_statistics_for_every_framework_and_pair(compared):
    result = json.loads((compared / "metrics" / "compare.json").read_text())
    assert set(result["frameworks"]) == {"pytorch", "jax"}
    for entry in result["frameworks"].values():
        assert entry["seeds"] == 2 and entry["accuracy_ci_method"] == "t interval across seeds"
        low, high = entry["accuracy_ci95"]
        assert low <= entry["accuracy_mean"] <= high
        assert sum(entry["time_percent"].values()) == pytest.approx(100, abs=0.1)
        for key in ("train_images_per_s", "epoch_median_s", "first_epoch_s", "peak_rss_mb", "latency_ms_p50",
                    "params", "lines_of_code", "roc_auc_mean", "roc_auc_ci95", "accuracy_std"):
            assert key in entry
    pair = result["pairs"]["pytorch_vs_jax"]
    assert set(pair["per_seed"]) == {"0", "1"}
    for seed in pair["per_seed"].values():
        assert 0 <= seed["mcnemar_p"] <= 1 and seed["b"] >= 0 and seed["c"] >= 0
    assert pair["verdict"].startswith(("no significant difference", "pytorch more accurate", "jax more accurate"))


def test_every_figure_is_a_png_and_the_report_is_complete(compared):
    for name in FIGURES:
        data = (compared / "plots" / "compare" / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    report = (compared / "reports" / "comparison.md").read_text()
    assert "pytorch" in report and "jax" in report
    # "What could not be made equal" names the compared frameworks' own differences, and no others.
    assert "torch's global generator" in report and "jax-ml/jax#39741" in report and "SeedGenerator" not in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)
    verdict = json.loads((compared / "metrics" / "compare.json").read_text())["pairs"]["pytorch_vs_jax"]["verdict"]
    assert verdict in report
    for table_header in ("| framework | seeds |", "| seed | accuracy difference |", "| framework | preprocessing"):
        header_at = report.index(table_header)
        rows = report[header_at:].split("\n\n")[0].splitlines()
        assert len(rows) >= 3, f"table {table_header!r} has no rows"
    for name in FIGURES:
        assert f"../plots/compare/{name}.png" in report


def test_dvc_shows_the_comparison(compared):
    metrics = json.loads(run_tool(["dvc", "metrics", "show", "--json"], compared).stdout)
    assert "metrics/compare.json" in json.dumps(metrics)
    plots = json.loads(run_tool(["dvc", "plots", "show", "--json"], compared).stdout)
    assert not plots.get("errors"), plots.get("errors")
    assert all(f"plots/compare/{name}.png" in plots["data"] for name in FIGURES)


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
