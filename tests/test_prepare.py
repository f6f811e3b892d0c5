"""prepare on the real shared archives: accounting, planted faults, determinism."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import KAGGLE_10K, PETIMAGES_MINI, copy_members, small_kaggle_zip
from dlcompare.params import PrepareParams
from dlcompare.prepare import prepare

SPLITS = ("train", "val", "test")


def run_prepare(tmp_path, source, name="out", **overrides):
    params = PrepareParams(**{"image_size": 32, **overrides})
    out = tmp_path / name / "prepared"
    metrics_path = tmp_path / name / "data.json"
    metrics = prepare(source, out, metrics_path, params)
    assert json.loads(metrics_path.read_text()) == metrics
    return out, metrics, pd.read_csv(out / "manifest.csv", keep_default_na=False)


def assert_consistent(out, metrics, manifest):
    """The invariants every prepare result must satisfy."""
    assert set(metrics) == {"files_seen", "images_kept", "dropped", "duplicates_removed", "split", "seconds", "images_per_s"}
    assert metrics["files_seen"] == metrics["images_kept"] + sum(metrics["dropped"].values())
    assert metrics["files_seen"] == len(manifest)
    assert metrics["duplicates_removed"] == metrics["dropped"].get("duplicate", 0)
    assert (manifest["reason"] != "").equals(manifest["split"] == "dropped")
    kept = manifest[manifest["split"] != "dropped"]
    assert not kept["sha256"].duplicated().any(), "a content hash is kept twice (so it could sit in two splits)"
    classes = json.loads((out / "info.json").read_text())["classes"]
    for split in SPLITS:
        x = np.load(out / f"{split}_x.npy", mmap_mode="r")
        y = np.load(out / f"{split}_y.npy")
        rows = kept[kept["split"] == split]
        assert x.shape == (len(rows), *x.shape[1:]) and x.dtype == np.uint8 and x.shape[-1] == 3
        assert [classes[i] for i in y] == rows["label"].tolist()
        assert {c: int((rows["label"] == c).sum()) for c in classes} == metrics["split"][split]


def test_petimages_mini_drops_every_planted_fault_with_its_reason(tmp_path):
    out, metrics, manifest = run_prepare(tmp_path, PETIMAGES_MINI)
    assert_consistent(out, metrics, manifest)
    reason = dict(zip(manifest["path"], manifest["reason"]))
    assert reason["readme[1].txt"] == "not_image_file"
    assert reason["PetImages/Cat/Thumbs.db"] == reason["PetImages/Dog/Thumbs.db"] == "os_junk"
    assert reason["PetImages/Cat/666.jpg"] == "empty"
    assert reason["PetImages/Dog/9500.jpg"] == "not_image"
    assert reason["PetImages/Dog/11702.jpg"] == "truncated"
    # Same bytes as a cat and as a dog: every copy goes, the label is unknowable.
    conflict = manifest[manifest["reason"] == "label_conflict"]
    assert set(conflict["path"]) == {"PetImages/Cat/9998.jpg", "PetImages/Dog/7.jpg"}
    assert conflict["sha256"].nunique() == 1
    # Exact duplicates: dropped, and their bytes are still kept once.
    duplicates = manifest[manifest["reason"] == "duplicate"]
    assert len(duplicates) == metrics["duplicates_removed"] == 2
    kept_hashes = set(manifest.loc[manifest["split"] != "dropped", "sha256"])
    assert set(duplicates["sha256"]) <= kept_hashes
    # Other formats and colour modes under a .jpg name are good images.
    for converted in ("PetImages/Dog/11410.jpg", "PetImages/Cat/10404.jpg", "PetImages/Cat/10125.jpg", "PetImages/Dog/2317.jpg"):
        assert reason[converted] == "", converted
    assert metrics["files_seen"] == len(zipfile.ZipFile(PETIMAGES_MINI).namelist()) - sum(
        n.endswith("/") for n in zipfile.ZipFile(PETIMAGES_MINI).namelist()
    )
    # 80:20 of each class, then 10 % of the rest for validation.
    for label in ("cat", "dog"):
        n = sum(metrics["split"][s][label] for s in SPLITS)
        assert metrics["split"]["test"][label] == round(0.2 * n)


def test_kaggle_10k_counts_and_split(tmp_path):
    out, metrics, manifest = run_prepare(tmp_path, KAGGLE_10K)
    assert_consistent(out, metrics, manifest)
    assert metrics["files_seen"] == 10_000
    assert set(manifest["label"]) == {"cat", "dog"}
    assert set(metrics["dropped"]) <= {"duplicate", "label_conflict"}
    per_class = manifest[manifest["split"] != "dropped"].groupby("label").size()
    for label, n in per_class.items():
        assert metrics["split"]["test"][label] == round(0.2 * n)
        assert metrics["split"]["val"][label] == round(0.1 * (n - round(0.2 * n)))
    assert metrics["images_per_s"] > 0


def test_same_params_give_byte_identical_outputs_and_another_seed_another_split(tmp_path):
    source = small_kaggle_zip(tmp_path / "small.zip", per_class=60)
    first, _, _ = run_prepare(tmp_path, source, "a")
    second, _, _ = run_prepare(tmp_path, source, "b")
    for name in ("manifest.csv", "info.json", *(f"{s}_{k}.npy" for s in SPLITS for k in "xy")):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    _, _, other_seed = run_prepare(tmp_path, source, "c", seed=1)
    _, _, same = run_prepare(tmp_path, source, "d")
    assert not other_seed["split"].equals(same["split"])


def test_split_does_not_depend_on_archive_layout(tmp_path):
    """The same photos as a Kaggle zip and as <class>/<file> folders land in the same splits."""
    source = small_kaggle_zip(tmp_path / "small.zip", per_class=40)
    folder = tmp_path / "folders"
    with zipfile.ZipFile(source) as archive:
        for name in archive.namelist():
            label = name.split("/")[-1].split(".")[0]
            (folder / label).mkdir(parents=True, exist_ok=True)
            (folder / label / name.split("/")[-1]).write_bytes(archive.read(name))
    _, _, from_zip = run_prepare(tmp_path, source, "zip")
    _, _, from_folder = run_prepare(tmp_path, folder, "folder")
    by_hash_zip = dict(zip(from_zip["sha256"], from_zip["split"]))
    by_hash_folder = dict(zip(from_folder["sha256"], from_folder["split"]))
    assert by_hash_zip == by_hash_folder


def test_per_class_cap_counts_capped_images_as_dropped(tmp_path):
    out, metrics, manifest = run_prepare(tmp_path, PETIMAGES_MINI, max_per_class=50)
    assert_consistent(out, metrics, manifest)
    for label in ("cat", "dog"):
        assert sum(metrics["split"][s][label] for s in SPLITS) == 50
    assert metrics["dropped"]["capped"] > 0


def test_arrays_hold_the_decoded_pixels(tmp_path):
    from dlcompare.data.images import decode_image

    source = tmp_path / "few.zip"
    copy_members(KAGGLE_10K, source, lambda n: n in {f"train/{c}.{i}.jpg" for c in ("cat", "dog") for i in range(12)})
    out, _, manifest = run_prepare(tmp_path, source)
    test_rows = manifest[manifest["split"] == "test"].reset_index(drop=True)
    x = np.load(out / "test_x.npy")
    with zipfile.ZipFile(source) as archive:
        for i, path in enumerate(test_rows["path"]):
            np.testing.assert_array_equal(x[i], decode_image(archive.read(path), 32))


def test_one_class_only_is_refused_before_writing(tmp_path):
    source = tmp_path / "cats.zip"
    copy_members(PETIMAGES_MINI, source, lambda n: n.startswith("PetImages/Cat/"))
    with pytest.raises(Exception, match="found cat 504, dog 0"):
        run_prepare(tmp_path, source)
    assert not (tmp_path / "out").exists()
