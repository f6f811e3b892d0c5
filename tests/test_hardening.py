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


# --- decode safely ----------------------------------------------------------------------------------------

from dlcompare.data.images import BadImage, decode_image  # noqa: E402


def photo_as(mode_array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mode_array).save(buffer, fmt)
    return buffer.getvalue()


def grey_photo() -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(kaggle_photo("cat.5.jpg"))).convert("L"))


@pytest.mark.parametrize("kind", ["png_16bit", "tiff_32bit_int", "tiff_float"])
def test_high_bit_depth_is_scaled_to_8_bits_not_clipped(kind):
    grey = grey_photo()
    wide = {"png_16bit": lambda: photo_as(grey.astype(np.uint16) * 257, "PNG"),
            "tiff_32bit_int": lambda: photo_as(grey.astype(np.int32) * 257, "TIFF"),
            "tiff_float": lambda: photo_as((grey / 255).astype(np.float32), "TIFF")}[kind]()
    expected = decode_image(photo_as(grey, "PNG"), 32).astype(int)
    got = decode_image(wide, 32).astype(int)
    assert np.abs(got - expected).max() <= 1, (got.mean(), expected.mean())


def test_float_pixels_outside_any_range_are_dropped():
    with pytest.raises(BadImage) as bad:
        decode_image(photo_as(np.full((64, 64), -3.5, np.float32), "TIFF"), 32)
    assert bad.value.reason == "unsupported_pixels"


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), then height and width
    return data[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 4:]


@pytest.mark.parametrize("kind", ["cut_in_half_with_end_marker", "header_claims_7000x7000"])
def test_jpeg_missing_its_data_is_truncated_not_a_grey_image(kind):
    photo = kaggle_photo("dog.17.jpg")
    data = photo[: len(photo) // 2] + b"\xff\xd9" if kind.startswith("cut") else jpeg_with_size(photo, 7000, 7000)
    with pytest.raises(BadImage) as bad:
        decode_image(data, 64)
    assert bad.value.reason == "truncated"


def png_declaring(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * (width + 1) * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def ico_holding(png: bytes) -> bytes:
    import struct

    # One directory entry that declares 256 x 256 (0 means 256) and points at the PNG.
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


BOMB_PROBE = """
import resource, sys
from pathlib import Path
from dlcompare.data.images import BadImage, decode_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(Path(sys.argv[1]).read_bytes(), 64, max_pixels=50_000_000)
    print("decoded", 0)
except BadImage as bad:
    print(bad.reason, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("kind", ["ico_holding_24000x24000_png", "png_24000x24000"])
def test_decompression_bombs_are_refused_before_their_pixels_are_allocated(tmp_path, kind):
    import subprocess
    import sys

    png = png_declaring(24000, 24000)
    bomb = tmp_path / "bomb.jpg"  # the name lies, as it would in a hostile archive
    bomb.write_bytes(ico_holding(png) if kind.startswith("ico") else png)
    assert bomb.stat().st_size < 1_000_000
    probe = subprocess.run([sys.executable, "-c", BOMB_PROBE, str(bomb)], capture_output=True, text=True, check=True)
    reason, grown_mb = probe.stdout.split()
    assert reason == "too_large" and int(grown_mb) < 50, probe.stdout  # 24000² bytes would be 549 MB
