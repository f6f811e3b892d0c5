"""Hostile or broken inputs are refused by the CLI: one line, non-zero exit, nothing written."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from conftest import PETIMAGES_MINI, copy_members, run_cli, write_params


def a_few_real_members(target: zipfile.ZipFile, n: int = 3) -> None:
    with zipfile.ZipFile(PETIMAGES_MINI) as src:
        for cls in ("Cat", "Dog"):
            for i in range(n):
                target.writestr(f"PetImages/{cls}/{i}.jpg", src.read(f"PetImages/{cls}/{i}.jpg"))


def escaping(path: Path, name: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        a_few_real_members(archive)
        archive.writestr(name, b"owned")


def symlink_entry(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        a_few_real_members(archive)
        link = zipfile.ZipInfo("PetImages/Cat/evil.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")


def bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        a_few_real_members(archive)
        archive.writestr("PetImages/Dog/bomb.jpg", b"\0" * (50 * 2**20))


def not_an_archive(path: Path) -> None:
    path.write_bytes(b"PK but not really a zip" * 100)


def empty_archive(path: Path) -> None:
    zipfile.ZipFile(path, "w").close()


def one_class(path: Path) -> None:
    copy_members(PETIMAGES_MINI, path, lambda name: name.startswith("PetImages/Dog/"))


CASES = {
    "dotdot": (lambda p: escaping(p, "../../escaped.jpg"), "outside the archive"),
    "absolute": (lambda p: escaping(p, "/tmp/dlcompare-absolute.jpg"), "outside the archive"),
    "symlink": (symlink_entry, "symbolic link"),
    "zip_bomb": (bomb, "zip bomb"),
    "not_archive": (not_an_archive, "not a zip archive"),
    "empty": (empty_archive, "contains no files"),
    "one_class": (one_class, "expected images of the classes cat, dog"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stage", ["fetch", "prepare"])
def test_hostile_input_is_refused_with_one_line(tmp_path, case, stage):
    build, message = CASES[case]
    hostile = tmp_path / "input" / "hostile.zip"
    hostile.parent.mkdir()
    build(hostile)
    project = tmp_path / "project"
    project.mkdir()
    if stage == "fetch":
        write_params(project, f"data:\n  source: {hostile}\n")
        result = run_cli("fetch", cwd=project)
    else:
        (project / "data" / "raw").mkdir(parents=True)
        (project / "data" / "raw" / "hostile.zip").write_bytes(hostile.read_bytes())
        write_params(project, "prepare:\n  image_size: 32\n")
        result = run_cli("prepare", cwd=project)
    if stage == "fetch" and case == "one_class":
        # fetch only places the data; classes are prepare's business.
        assert result.returncode == 0
        return
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    produced = sorted(p.relative_to(project).as_posix() for p in project.rglob("*"))
    expected = sorted(["params.yaml"] + (["data", "data/raw", "data/raw/hostile.zip"] if stage == "prepare" else []))
    assert produced == expected
    assert not Path("/tmp/dlcompare-absolute.jpg").exists()
    assert not (tmp_path / "escaped.jpg").exists()


def test_symlink_in_a_folder_source_is_refused(tmp_path):
    folder = tmp_path / "photos"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
    (folder / "cat" / "secret.jpg").symlink_to("/etc/passwd")
    write_params(tmp_path, f"data:\n  source: {folder}\n")
    result = run_cli("fetch", cwd=tmp_path)
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert not (tmp_path / "data").exists()


def test_missing_raw_data_tells_to_fetch_first(tmp_path):
    write_params(tmp_path, "prepare:\n  image_size: 32\n")
    result = run_cli("prepare", cwd=tmp_path)
    assert result.returncode == 1 and "run `dlcompare fetch`" in result.stderr
