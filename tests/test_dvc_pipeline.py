"""fetch + prepare through `dvc repro` in a throw-away git + DVC repo on a real zip."""

import json

from conftest import PETIMAGES_MINI, make_dvc_project, run_tool


def test_dvc_repro_fetch_prepare_then_nothing_to_do(tmp_path):
    project = make_dvc_project(
        tmp_path / "project", {"data": {"source": str(PETIMAGES_MINI)}, "prepare": {"image_size": 32}}
    )
    first = run_tool(["dvc", "repro", "prepare"], project)
    assert "Running stage 'fetch'" in first.stdout and "Running stage 'prepare'" in first.stdout
    metrics = json.loads((project / "metrics" / "data.json").read_text())
    assert metrics["files_seen"] == metrics["images_kept"] + sum(metrics["dropped"].values())
    assert (project / "data" / "prepared" / "train_x.npy").exists()

    second = run_tool(["dvc", "repro", "prepare"], project)
    assert "Running stage" not in second.stdout
    assert "up to date" in run_tool(["dvc", "status", "prepare"], project).stdout

    shown = run_tool(["dvc", "metrics", "show", "--json"], project).stdout
    assert "images_kept" in shown
