"""fetch + prepare through `dvc repro` in a throw-away git + DVC repo on a real zip."""

import json

import yaml

from conftest import PETIMAGES_MINI, ROOT, make_dvc_project, run_tool
from dlcompare.params import TrainParams


def test_dvc_repro_fetch_prepare_then_nothing_to_do(tmp_path):
    project = make_dvc_project(
        tmp_path / "project", {"data": {"source": str(PETIMAGES_MINI)}, "prepare": {"image_size": 32}}
    )
    first = run_tool(["dvc", "repro", "prepare"], project)
    assert "Running stage 'fetch'" in first.stdout and "Running stage 'prepare'" in first.stdout
    metrics = json.loads((project / "metrics" / "data.json").read_text())
    assert metrics["files_seen"] == metrics["images_kept"] + sum(metrics["dropped"].values())
    assert (project / "data" / "prepared" / "train_x.npy").exists()

    # The zip exists twice in all (the user's file and DVC's cache, which data/raw links to), not three times.
    copies = {(path.stat().st_dev, path.stat().st_ino) for path in
              [PETIMAGES_MINI, project / "data" / "raw" / PETIMAGES_MINI.name,
               *(p for p in (project / ".dvc" / "cache").rglob("*") if p.is_file() and p.stat().st_size == PETIMAGES_MINI.stat().st_size)]}
    assert len(copies) == 2, copies

    second = run_tool(["dvc", "repro", "prepare"], project)
    assert "Running stage" not in second.stdout
    assert "up to date" in run_tool(["dvc", "status", "prepare"], project).stdout

    shown = run_tool(["dvc", "metrics", "show", "--json", "metrics/data.json"], project).stdout  # not a declared metric
    assert "images_kept" in shown


def test_dvc_exp_run_set_changes_one_line_of_the_project_params(tmp_path):
    """params.yaml is kept in the layout DVC's writer produces, so -S shows up in review as the one changed line."""
    import shutil

    from conftest import ROOT

    project = tmp_path / "p"
    project.mkdir()
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    (project / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo done > out.txt\n    params:\n      - train.epochs\n"
                                      "    outs:\n      - out.txt\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "start"],
                    ["dvc", "exp", "run", "-q", "-S", "train.epochs=2"]):
        run_tool(command, project)
    changed = run_tool(["git", "diff", "--numstat", "params.yaml"], project).stdout.split()
    assert changed[:2] == ["1", "1"], run_tool(["git", "diff", "params.yaml"], project).stdout
    assert "+  epochs: 2" in run_tool(["git", "diff", "params.yaml"], project).stdout


def test_unknown_framework_is_one_dlcompare_line_before_any_stage_even_with_data_cached(tmp_path):
    """With fetch and prepare up to date, the first stage to run used to be train@<unknown>, whose missing
    dependency folder DVC reported as a raw [Errno 2]."""
    project = make_dvc_project(tmp_path / "project", {"data": {"source": str(PETIMAGES_MINI)}, "prepare": {"image_size": 32},
                                                      "train": {"frameworks": ["pytorch"]}})
    run_tool(["dvc", "repro", "prepare"], project)
    params = (project / "params.yaml").read_text().replace("  - pytorch\n", "  - caffe\n  - pytorch\n", 1)
    (project / "params.yaml").write_text(params)
    result = run_tool(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if line.startswith("dlcompare: error:")]
    assert len(ours) == 1 and "train.frameworks.0 = 'caffe' is invalid" in ours[0], output
    assert "Errno" not in output and "Running stage 'train" not in output


def test_train_stage_depends_on_every_training_parameter():
    """A train key missing from dvc.yaml would let `dvc exp run -S train.<key>=...` reuse stale models."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    listed = {name for name in stage["params"] if name.startswith("train.")}
    expected = {f"train.{key}" for key in TrainParams.model_fields} - {"train.frameworks", "train.seeds"}
    assert listed == expected
