"""Hostile and unusual inputs to fetch, prepare and predict, each built at test time from the shared photos.

Every case asserts its outcome: the drop reason, the exact one-line error and exit code, or the
bounded resource use.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import KAGGLE_10K, PETIMAGES_MINI, run_cli, write_params
from dlcompare.params import PrepareParams
from dlcompare.prepare import prepare


def kaggle_photo(name: str) -> bytes:
    with zipfile.ZipFile(KAGGLE_10K) as archive:
        return archive.read(f"train/{name}")


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def kaggle_members(per_class: int = 12, folder: str = "train") -> dict[str, bytes]:
    return {f"{folder}/{c}.{i}.jpg": kaggle_photo(f"{c}.{i}.jpg") for c in ("cat", "dog") for i in range(per_class)}


def prepared(tmp_path: Path, source: Path, **overrides) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / "prepared"
    metrics = prepare(source, out, tmp_path / "data.json", PrepareParams(**{"image_size": 32, **overrides}))
    return metrics, pd.read_csv(out / "manifest.csv", keep_default_na=False)


# --- labels you can trust -------------------------------------------------------------------------------


def test_kaggle_train_and_unlabelled_test1_folder_keeps_cat_and_dog(tmp_path):
    members = kaggle_members()
    members.update({f"test1/{i}.jpg": kaggle_photo(f"cat.{100 + i}.jpg") for i in range(8)})
    metrics, manifest = prepared(tmp_path, write_zip(tmp_path / "both.zip", members))
    assert set(manifest.loc[manifest["split"] != "dropped", "label"]) == {"cat", "dog"}
    assert metrics["dropped"] == {"no_label": 8}
    assert (manifest.loc[manifest["path"].str.startswith("test1/"), "reason"] == "no_label").all()


@pytest.mark.parametrize("stray", ["train/cat.10020 (1).jpg", "PetImages/preview.jpg", "readme.jpg"])
def test_one_stray_file_is_dropped_not_relabelling_everything(tmp_path, stray):
    members = kaggle_members()
    members[stray] = kaggle_photo("dog.200.jpg")
    metrics, manifest = prepared(tmp_path, write_zip(tmp_path / "stray.zip", members))
    assert metrics["dropped"] == {"no_label": 1} and metrics["images_kept"] == 24
    assert manifest.set_index("path").loc[stray, "reason"] == "no_label"


def test_folders_that_are_not_the_expected_classes_stop_before_decoding(tmp_path):
    members = {f"insects/{c}/{i}.jpg": kaggle_photo(f"cat.{i}.jpg") for c in ("ants", "bees") for i in range(5)}
    source = write_zip(tmp_path / "insects.zip", members)
    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "insects.zip").write_bytes(source.read_bytes())
    write_params(project, "prepare:\n  image_size: 32\n")
    result = run_cli("prepare", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "dlcompare: error: data/raw/insects.zip: expected images of the classes cat, dog (prepare.classes), found cat 0,"
        " dog 0; image files without one of those labels, by folder: insects/ants/ 5, insects/bees/ 5. Name files"
        " <class>.N.jpg or put them in <class>/ folders, or set prepare.classes to the two folder names you use"]
    assert not (project / "data" / "prepared").exists() and not (project / "metrics").exists()

    write_params(project, "prepare:\n  image_size: 32\n  classes: [ants, bees]\n")
    assert run_cli("prepare", cwd=project, check=True).returncode == 0
