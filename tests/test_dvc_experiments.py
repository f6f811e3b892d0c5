"""The whole train/evaluate matrix through DVC: repro, an experiment, and what code review sees."""

import json

import yaml

from conftest import make_dvc_project, run_tool, small_kaggle_zip
from dlcompare.frameworks import NAMES, pinned_versions


def metric_files(node) -> set[str]:
    """The files listed under every "metrics" key of dvc's JSON output."""
    if isinstance(node, list):
        return set().union(*map(metric_files, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set(node["metrics"]) if isinstance(node.get("metrics"), dict) else set()
    return found.union(*(metric_files(value) for value in node.values()))


def test_repro_then_experiment_shows_every_framework(tmp_path):
    source = small_kaggle_zip(tmp_path / "small.zip", per_class=60)
    project = make_dvc_project(tmp_path / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32},
        "model": {"plain_cnn": {"filters": [8, 16]}},
        "train": {"epochs": 1, "batch_size": 16},
        "evaluate": {"latency_runs": 5},
    })
    first = run_tool(["dvc", "repro"], project).stdout
    for framework in NAMES:  # the default params list all six
        for stage in ("train", "evaluate"):
            assert f"Running stage '{stage}@{framework}-0'" in first
    run_tool(["git", "add", "-A"], project)
    run_tool(["git", "commit", "-qm", "baseline run"], project)
    assert "Running stage" not in run_tool(["dvc", "repro"], project).stdout

    experiment = run_tool(["dvc", "exp", "run", "-S", "train.epochs=2"], project).stdout
    assert "Running stage 'prepare'" not in experiment and "Running stage 'train@keras-0'" in experiment
    # Speed is measured by its own stage, which the number of epochs does not change.
    assert "Running stage 'speed'" not in experiment

    shown = json.loads(run_tool(["dvc", "exp", "show", "--json"], project).stdout)
    for framework in NAMES:  # the headline, per framework, is what exp show lists
        assert f'"{framework}": {{"acc": ' in json.dumps(shown)
    # Per-run files are outputs (and compare's dependencies), not metrics.
    assert metric_files(shown) == {"metrics/compare.json", "metrics/speed.json"}
    # The framework versions are params: a version experiment's row says which versions it ran.
    versions = yaml.safe_load((project / "versions.yaml").read_text())
    assert versions["keras"] == pinned_versions()["keras"]
    assert f'"versions.yaml": {{"data": {json.dumps(versions)}}}' in json.dumps(shown)

    diff = json.loads(run_tool(["dvc", "metrics", "diff", "--json"], project).stdout)
    assert list(diff) == ["metrics/compare.json"]
    changed = diff["metrics/compare.json"]
    for framework in NAMES:
        assert f"{framework}.acc" in changed or f"{framework}.images_per_s" in changed
    # The per-run files keep their paths and keys: the epochs changed there.
    assert json.loads((project / "metrics" / "train" / "keras-0.json").read_text())["epochs"] == 2

    plots = json.loads(run_tool(["dvc", "plots", "diff", "--json", "--split"], project).stdout)
    assert not plots.get("errors"), plots.get("errors")
    (curves,) = plots["data"]["Validation accuracy per epoch, every run"]
    rows = curves["anchor_definitions"]["<DVC_METRIC_DATA>"]
    # Both revisions and every framework on one axis: 1 epoch at HEAD, 2 in the workspace.
    assert {(row["rev"], row["framework"]) for row in rows} == {(rev, f) for rev in ("HEAD", "workspace") for f in NAMES}
    assert len(rows) == 3 * len(NAMES)
    for framework in NAMES:
        assert f"plots/eval/{framework}-0/predictions.csv" in plots["data"]


def test_queued_sweep_trains_only_new_runs_and_apply_leaves_status_clean(tmp_path):
    """dvc exp run --queue + dvc queue start: runs already done are reused, a relative data.source resolves from
    the project root inside the queue's temporary workspace, and after dvc exp apply nothing looks changed."""
    import time

    source = small_kaggle_zip(tmp_path / "small.zip", per_class=40)
    project = make_dvc_project(tmp_path / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32},
        "model": {"plain_cnn": {"filters": [8, 16]}},
        "train": {"frameworks": ["pytorch", "jax"], "epochs": 1, "batch_size": 16},
        "evaluate": {"latency_runs": 5, "bootstrap_samples": 200},
    })
    run_tool(["dvc", "repro"], project)
    run_tool(["git", "add", "-A"], project)
    run_tool(["git", "commit", "-qm", "seed 0"], project)

    run_tool(["dvc", "exp", "run", "--queue", "-n", "two-seeds", "-S", "train.seeds=[0,1]",
              "-S", "data.source=../small.zip"], project)  # relative to the project root, not to the queue's copy
    run_tool(["dvc", "queue", "start", "-j", "1"], project)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run_tool(["dvc", "queue", "status"], project).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    assert "Success" in status, status
    log = run_tool(["dvc", "queue", "logs", "two-seeds"], project).stdout
    for framework in ("pytorch", "jax"):
        assert f"Running stage 'train@{framework}-1'" in log
        assert f"Running stage 'train@{framework}-0'" not in log, log
    assert "Running stage 'prepare'" not in log

    run_tool(["dvc", "exp", "apply", "two-seeds"], project)
    status = run_tool(["dvc", "status"], project).stdout
    assert "Data and pipelines are up to date" in status, status

    # What code review sees for a one-parameter change with two frameworks: a short, narrow table.
    table = run_tool(["dvc", "metrics", "diff"], project).stdout.splitlines()
    assert 2 <= len(table) <= 30 and max(map(len, table)) <= 120, "\n".join(table)

    # The second architecture is one parameter away: one changed line in params.yaml (one seed, to keep CI short).
    run_tool(["git", "add", "-A"], project)
    run_tool(["git", "commit", "-qm", "two seeds"], project)
    resnet = run_tool(["dvc", "exp", "run", "-n", "resnet", "-S", "model.preset=resnet", "-S", "train.seeds=[0]"],
                      project).stdout
    for framework in ("pytorch", "jax"):
        assert f"Running stage 'train@{framework}-0'" in resnet
    assert "Running stage 'prepare'" not in resnet and "Running stage 'speed'" in resnet
    changed = [line[0] + line[1:].split("#")[0].strip()
               for line in run_tool(["git", "diff", "-U0", "params.yaml"], project).stdout.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert [line for line in changed if "preset" in line] == ["-preset: plain_cnn", "+preset: resnet"], changed
    seeds = [line for line in changed if "preset" not in line]
    assert all("seeds" in line or line[1:].lstrip("- ").isdigit() for line in seeds), changed
    report = (project / "reports" / "comparison.md").read_text()
    assert "- **Model**: ResNet-14 (CIFAR-style)" in report
    train_metrics = json.loads((project / "metrics" / "train" / "jax-0.json").read_text())
    assert train_metrics["flops_per_image"] > 0 and train_metrics["params"] == 695_457
    shown = run_tool(["dvc", "exp", "show", "--only-changed", "--md"], project).stdout
    assert "model.preset" in shown and "resnet" in shown and "plain_cnn" in shown, shown
