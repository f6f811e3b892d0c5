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

from conftest import KAGGLE_10K, run_cli, write_params
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


# --- one line for every user-caused failure ----------------------------------------------------------------


def photo_folder(root: Path, per_class: int = 12) -> Path:
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / c / f"{i}.jpg").write_bytes(kaggle_photo(f"{c}.{i}.jpg"))
    return root


def fetch_line(project: Path, source: Path, timeout: float = 60) -> tuple[int, list[str]]:
    import subprocess

    from conftest import BIN, env_with_venv

    write_params(project, f"data:\n  source: {source}\n")
    result = subprocess.run([str(BIN / "dlcompare"), "fetch"], cwd=project, env=env_with_venv(), capture_output=True,
                            text=True, timeout=timeout)  # a blocking read would hang here
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("special", ["fifo", "socket"])
def test_special_file_in_a_folder_source_is_refused_without_blocking(tmp_path, special):
    import os
    import socket

    photos = photo_folder(tmp_path / "photos")
    path = photos / "cat" / "special.jpg"
    if special == "fifo":
        os.mkfifo(path)
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
    project = tmp_path / "project"
    project.mkdir()
    code, lines = fetch_line(project, photos)
    kind = "named pipe" if special == "fifo" else "socket"
    assert code == 1 and lines == [f"dlcompare: error: {path}: is a {kind}, not a file; remove it from the folder"]
    assert not (project / "data").exists()


def test_file_name_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path):
    import os

    photos = photo_folder(tmp_path / "photos")
    os.rename(photos / "cat" / "0.jpg", os.fsencode(photos / "cat") + b"/caf\xe9.jpg")
    project = tmp_path / "project"
    project.mkdir()
    code, lines = fetch_line(project, photos)
    assert code == 1 and len(lines) == 1 and "caf\\xe9.jpg: the file name is not valid UTF-8; rename it" in lines[0]
    assert not (project / "data").exists()


def damaged_members(path: Path) -> dict[str, str]:
    """A real zip whose members go bad in the ways real archives do; returns name -> how it is damaged."""
    import struct

    members = kaggle_members(per_class=12)
    names = {"train/cat.1.jpg": "bad_crc", "train/dog.2.jpg": "unsupported_method", "train/cat.3.jpg": "encrypted",
             "train/dog.4.jpg": "name_mismatch"}
    write_zip(path, members)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    for name, damage in names.items():
        local = infos[name].header_offset
        central = next(i for i in _all(data, b"PK\x01\x02") if data[i + 46: i + 46 + len(name)] == name.encode())
        if damage == "bad_crc":
            start = local + 30 + len(name)
            data[start + 100] ^= 0xFF
        elif damage == "unsupported_method":
            for at in (local + 8, central + 10):
                data[at: at + 2] = struct.pack("<H", 99)
        elif damage == "encrypted":
            for at in (local + 6, central + 8):
                data[at] |= 1
        elif damage == "name_mismatch":
            data[local + 30] = ord("x")
    path.write_bytes(bytes(data))
    return names


def _all(data: bytes, needle: bytes):
    at = data.find(needle)
    while at != -1:
        yield at
        at = data.find(needle, at + 1)


def test_unreadable_zip_members_are_dropped_and_the_rest_is_prepared(tmp_path):
    source = tmp_path / "damaged.zip"
    damaged = damaged_members(source)
    metrics, manifest = prepared(tmp_path, source)
    by_path = manifest.set_index("path")
    for name in damaged:
        assert by_path.loc[name, "reason"] == "unreadable", name
    assert metrics["dropped"] == {"unreadable": 4} and metrics["images_kept"] == 20


def test_entry_without_a_file_name_is_one_line(tmp_path):
    members = kaggle_members(per_class=4)
    members["train/."] = b"x"
    project = tmp_path / "project"
    project.mkdir()
    code, lines = fetch_line(project, write_zip(tmp_path / "dot.zip", members))
    assert code == 1 and len(lines) == 1 and "an entry has no file name ('train/.')" in lines[0]


def test_file_names_with_line_breaks_and_quotes_round_trip_through_the_manifest(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    odd = ["cat/a\rb.jpg", "dog/c\nd.jpg", 'cat/"quoted", name.jpg']
    for name, source in zip(odd, ["cat/0.jpg", "dog/0.jpg", "cat/1.jpg"]):
        (photos / source).rename(photos / name)
    metrics, manifest = prepared(tmp_path, photos)
    assert len(manifest) == metrics["files_seen"] == 24
    assert set(odd) <= set(manifest["path"])


def killed_like_the_oom_killer_does(chunk):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_decoding_worker_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    from dlcompare import prepare as prepare_module
    from dlcompare.errors import UserError

    monkeypatch.setattr(prepare_module, "_decode_chunk", killed_like_the_oom_killer_does)
    source = write_zip(tmp_path / "k.zip", kaggle_members(per_class=4))
    with pytest.raises(UserError, match="a decoding process died"):
        prepare(source, tmp_path / "out" / "prepared", tmp_path / "out" / "data.json", PrepareParams(image_size=32))
    assert list((tmp_path / "out").iterdir()) == []


def test_a_file_in_the_way_of_the_metrics_folder_stops_before_any_work(tmp_path):
    from dlcompare.errors import UserError

    (tmp_path / "metrics").write_text("not a folder")
    source = write_zip(tmp_path / "k.zip", kaggle_members(per_class=4))
    with pytest.raises(UserError, match="a file is in the way of the output folder"):
        prepare(source, tmp_path / "data" / "prepared", tmp_path / "metrics" / "data.json", PrepareParams(image_size=32))
    assert not (tmp_path / "data").exists()


def test_kill_9_during_prepare_leaves_no_worker_and_the_next_run_cleans_the_scratch(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import BIN, KAGGLE_10K, env_with_venv

    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    os.link(KAGGLE_10K, project / "data" / "raw" / "train.zip")
    write_params(project, "prepare:\n  image_size: 64\n  workers: 2\n")
    process = subprocess.Popen([str(BIN / "dlcompare"), "prepare"], cwd=project, env=env_with_venv(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((project / "data").glob(".prepared.partial-*/all_pixels.npy")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert workers, "prepare had no decoding workers to orphan"
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(1.0)
    # A worker that died but was not yet reaped (a zombie, state Z) is gone; one still running or sleeping is not.
    alive = [pid for pid in workers if Path(f"/proc/{pid}/stat").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")]
    assert alive == [], "decoding workers outlived a killed prepare"
    assert list((project / "data").glob(".prepared.partial-*"))  # the scratch a kill -9 cannot clean up

    write_params(project, "prepare:\n  image_size: 32\n  max_per_class: 50\n")
    from conftest import run_cli

    run_cli("prepare", cwd=project, check=True)
    assert sorted(p.name for p in (project / "data").iterdir()) == ["prepared", "raw"]


# --- params ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("train:\n  learning_rate: .inf\n", "train.learning_rate = inf is invalid"),
    ("train:\n  epochs: 3\n  epochs: 4\n", "key 'epochs' appears twice (line 3); keep one"),
    ("prepare:\n  classes: [cat, cat]\n", "prepare.classes names 'cat' twice"),
])
def test_params_mistakes_are_one_line(tmp_path, text, message):
    write_params(tmp_path, text)
    result = run_cli("prepare", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr, result.stderr


def test_params_file_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_bytes("data:\n  source: caf\xe9\n".encode("latin-1"))
    result = run_cli("fetch", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["dlcompare: error: params.yaml: not UTF-8 text (byte 19); save it as UTF-8"]


def test_evaluate_with_an_unknown_framework_and_a_model_folder_is_one_line(tmp_path, tiny_prepared):
    from conftest import tiny_project

    project = tiny_project(tmp_path / "p", tiny_prepared)
    (project / "models" / "caffe-0").mkdir(parents=True)
    result = run_cli("evaluate", "-f", "caffe", "-s", "0", cwd=project)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1 and "caffe" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("cap, remedy", [(None, "add images or lower those fractions"),
                                         (3, "raise prepare.max_per_class or lower those fractions")])
def test_too_few_images_suggests_max_per_class_only_when_it_is_set(tmp_path, cap, remedy):
    from dlcompare.errors import UserError

    per_class = 3 if cap is None else 12
    with pytest.raises(UserError, match=remedy):
        prepared(tmp_path, write_zip(tmp_path / "few.zip", kaggle_members(per_class=per_class)), max_per_class=cap)


def test_sigterm_during_prepare_removes_its_scratch_and_keeps_the_previous_output(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import BIN, env_with_venv

    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    os.link(KAGGLE_10K, project / "data" / "raw" / "train.zip")
    write_params(project, "prepare:\n  image_size: 32\n  max_per_class: 50\n")
    run_cli("prepare", cwd=project, check=True)
    before = (project / "data" / "prepared" / "manifest.csv").read_bytes()

    write_params(project, "prepare:\n  image_size: 64\n  workers: 2\n")
    process = subprocess.Popen([str(BIN / "dlcompare"), "prepare"], cwd=project, env=env_with_venv(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((project / "data").glob(".prepared.partial-*/all_pixels.npy")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == ["dlcompare: terminated; nothing half-written was kept"]
    assert sorted(p.name for p in (project / "data").iterdir()) == ["prepared", "raw"]
    assert (project / "data" / "prepared" / "manifest.csv").read_bytes() == before


def test_a_sigterm_whose_exception_python_dropped_still_keeps_the_previous_output(tmp_path, monkeypatch):
    """The handler's exception can land in a __del__, where Python prints it and goes on; the commit still stops."""
    import signal

    from dlcompare import errors
    from dlcompare.atomic import building_dir

    class SigtermDuringDel:
        def __del__(self):
            errors.on_sigterm(signal.SIGTERM, None)

    monkeypatch.setattr(errors, "_terminated", False)  # the flag is process-wide: undo it after the test
    monkeypatch.setattr("sys.unraisablehook", lambda unraisable: None)
    target = tmp_path / "out"
    target.mkdir()
    (target / "result.txt").write_text("previous")
    with pytest.raises(errors.Terminated):
        with building_dir(target) as work:
            (work / "result.txt").write_text("half")
            SigtermDuringDel()  # collected at once: its Terminated is dropped and the block carries on
            (work / "more.txt").write_text("the rest of the command ran")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "result.txt").read_text() == "previous"


def test_a_command_that_finished_after_a_dropped_sigterm_still_ends_143(monkeypatch, capsys):
    """The dropped SIGTERM can come after the last commit point (a dvclive write, say): the exit still says so."""
    import signal
    import sys

    from dlcompare import errors
    from dlcompare.cli import app

    monkeypatch.setattr(errors, "_terminated", True)  # as on_sigterm leaves it when its exception was dropped
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # App.__call__ replaces both: undo them after
    previous_handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as ended:
            app(["--help"])  # succeeds on its own (exit 0)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    assert ended.value.code == 143
    assert capsys.readouterr().err.strip() == "dlcompare: terminated; nothing half-written was kept"
