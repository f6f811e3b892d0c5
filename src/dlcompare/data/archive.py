"""Read a zip archive or a folder of images in place, refusing hostile input.

Everything that could make reading unsafe is checked from the listing alone
(the zip central directory or a directory walk), before a single byte is
written anywhere: paths that escape the root, links, entries that inflate far
beyond their compressed size, things that are not archives at all.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dlcompare.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
OS_JUNK_NAMES = {"thumbs.db", ".ds_store", "desktop.ini"}

# No pet photo is anywhere near these sizes; a compression ratio this high means
# a file of zeros (a zip bomb), not a JPEG (JPEGs barely compress at all).
MAX_ENTRY_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 64 * 2**30
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_ABOVE_BYTES = 2**20

KAGGLE_NAME = re.compile(r"^([a-z]+)\.\d+\.[a-z0-9]+$", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One file of the source: its path inside the source (POSIX) and size."""

    path: str
    size: int


def _check_entry_path(source: Path, name: str) -> str:
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.split("/")[-1] in ("", "."):  # PurePosixPath would quietly turn "train/." into "train"
        raise UserError(f"{source}: an entry has no file name ({name!r}); refusing the damaged archive")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in parts:
        raise UserError(
            f"{source}: entry '{name}' points outside the archive; refusing to read it"
            " (use a clean copy of the dataset)"
        )
    return posix


class ZipSource:
    """A zip archive read member by member, never unpacked to disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{self.path}: cannot read the zip archive ({exc}); download it again") from None
        self._members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            name = _check_entry_path(self.path, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UserError(f"{self.path}: entry '{name}' is a symbolic link; refusing the archive")
            if info.file_size > MAX_ENTRY_BYTES or (
                info.file_size > RATIO_CHECK_ABOVE_BYTES
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
            ):
                raise UserError(
                    f"{self.path}: entry '{name}' would inflate to {info.file_size:,} bytes from"
                    f" {info.compress_size:,} (a zip bomb?); refusing the archive"
                )
            if name in self._members:
                raise UserError(f"{self.path}: two entries are named '{name}'; refusing the ambiguous archive")
            total += info.file_size
            self._members[name] = info
        if total > MAX_TOTAL_BYTES:
            raise UserError(f"{self.path}: archive would inflate to {total:,} bytes; refusing it")
        self.entries = sorted((Entry(name, info.file_size) for name, info in self._members.items()), key=lambda e: e.path)
        self._archive: zipfile.ZipFile | None = None

    def read(self, path: str) -> bytes:
        # ZipExtFile stops at the declared size and checks the CRC, so a member
        # cannot inflate past what the (already vetted) listing promised.
        if self._archive is None:
            self._archive = zipfile.ZipFile(self.path)
        with self._archive.open(self._members[path]) as member:
            return member.read()


class FolderSource:
    """A directory tree of image files."""

    def __init__(self, path: Path):
        self.path = Path(path)
        entries = []
        for root, dirs, files in os.walk(self.path):
            for name in sorted(dirs + files):
                full = Path(root) / name
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    shown = os.fsencode(full).decode("utf-8", "backslashreplace")
                    raise UserError(f"{shown}: the file name is not valid UTF-8; rename it") from None
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    raise UserError(f"{full}: is a symbolic link; replace it with the file itself or remove it")
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    # Reading a named pipe would block forever; sockets and devices are not photos either.
                    raise UserError(f"{full}: is a {_special_kind(mode)}, not a file; remove it from the folder")
            for name in files:
                full = Path(root) / name
                entries.append(Entry(full.relative_to(self.path).as_posix(), full.lstat().st_size))
        self.entries = sorted(entries, key=lambda e: e.path)

    def read(self, path: str) -> bytes:
        return (self.path / path).read_bytes()


def _special_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return "special file"


def open_source(path: Path) -> ZipSource | FolderSource:
    """Open a zip or folder after checking that it is safe and non-empty."""
    path = Path(path)
    if path.is_dir():
        source: ZipSource | FolderSource = FolderSource(path)
    elif path.is_file():
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path}: not a zip archive; give a Kaggle/Microsoft zip or a folder of <class>/<image> files")
        source = ZipSource(path)
    else:
        raise UserError(f"{path}: no such file or folder")
    if not source.entries:
        raise UserError(f"{path}: contains no files; give an archive or folder with images in it")
    return source


def junk_or_non_image(path: str) -> str | None:
    """The drop reason a path earns by its name alone, or None if it may be an image."""
    parts = PurePosixPath(path).parts
    name = parts[-1]
    if name.lower() in OS_JUNK_NAMES or name.startswith("._") or "__MACOSX" in parts:
        return "os_junk"
    if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
        return "not_image_file"
    return None


def label_of(path: str, classes: tuple[str, ...]) -> tuple[str | None, str]:
    """(class, how it was found) for one file, or (None, "") when the path names none of `classes`.

    Each file on its own, never the archive as a whole: a Kaggle name `cat.N.jpg` gives its
    prefix; otherwise a parent folder named like a class (`PetImages/Cat/N.jpg`) gives that
    class. Everything else (Kaggle's unlabelled `test1/N.jpg`, a stray `train/cat.1 (1).jpg`,
    `PetImages/preview.jpg`) has no label. Comparisons ignore case.
    """
    parts = PurePosixPath(path).parts
    match = KAGGLE_NAME.match(parts[-1])
    if match and match.group(1).lower() in classes:
        return match.group(1).lower(), "kaggle"
    if len(parts) >= 2 and parts[-2].lower() in classes:
        return parts[-2].lower(), "folders"
    return None, ""
