"""Stage `fetch`: put the raw Dogs-vs-Cats archive or folder under data/raw/.

`data.source` picks where it comes from:
- `download`: stream `data.url` (the official Microsoft zip by default) with a
  progress bar, resume an interrupted transfer with an HTTP Range request,
  verify `data.sha256`, and only then move the file into place;
- `kaggle`: the competition's train.zip through the Kaggle API;
- a path to a zip (Kaggle train.zip, Microsoft zip) or a folder of images,
  linked rather than copied.
Completed downloads are kept in data/downloads/ (git- and DVC-ignored) because
DVC empties data/raw/ before re-running this stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import requests
from tqdm import tqdm

from dlcompare.atomic import building_dir
from dlcompare.data.archive import open_source
from dlcompare.errors import UserError
from dlcompare.params import DataParams

DOWNLOADS = Path("data/downloads")
CHUNK_BYTES = 1 << 20
ATTEMPTS = 4
OTHER_WAYS = (
    "set data.source in params.yaml to a Kaggle train.zip, the Microsoft kagglecatsanddogs zip,"
    " or a folder of <class>/<image> files you already have (or to 'kaggle' with API credentials)"
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _transfer(url: str, part: Path, timeout: float, max_bytes: int) -> None:
    """One attempt: continue `part` from its current size, or start over if the server won't."""
    state_file = part.with_name(part.name + ".json")
    offset = part.stat().st_size if part.exists() else 0
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = json.loads(state_file.read_text()).get("validator") if state_file.exists() else None
        if validator:  # the server restarts from zero if the file changed since
            headers["If-Range"] = validator
    with requests.get(url, stream=True, headers=headers, timeout=timeout) as response:
        if response.status_code == 416 and offset:
            return  # nothing left to fetch: the part is already complete
        if response.status_code not in (200, 206):
            raise UserError(f"{url}: the server answered HTTP {response.status_code}; check data.url or {OTHER_WAYS}")
        if response.status_code == 200:
            offset = 0
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        state_file.write_text(json.dumps({"url": url, "validator": validator}))
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            _discard(part)
            raise UserError(f"{url}: the server announces {total:,} bytes, more than data.max_bytes = {max_bytes:,};"
                            " check data.url, or raise data.max_bytes if the file really is that large")
        written = offset
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"), disable=None
        ) as bar:
            for block in response.iter_content(CHUNK_BYTES):
                written += len(block)
                if written > max_bytes:  # a server that never stops, or lies about the length
                    out.close()
                    _discard(part)
                    raise UserError(f"{url}: the download passed data.max_bytes = {max_bytes:,} bytes and was stopped"
                                    " and deleted; check data.url, or raise data.max_bytes")
                out.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise requests.exceptions.ChunkedEncodingError("connection closed early")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    part.with_name(part.name + ".json").unlink(missing_ok=True)


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0, max_bytes: int = 2**30) -> Path:
    """Download `url` to `dest` resumably; `dest` exists only if complete and verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256.lower()):
        return dest
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _transfer(url, part, timeout, max_bytes)
            break
        except requests.exceptions.ConnectionError as exc:
            if not part.exists() or attempt == ATTEMPTS or "Failed to resolve" in str(exc) or "Connection refused" in str(exc):
                raise UserError(f"cannot download {url} (no connection); {OTHER_WAYS}") from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.Timeout):
            if attempt == ATTEMPTS:
                have = part.stat().st_size if part.exists() else 0
                raise UserError(f"download of {url} interrupted after {have:,} bytes; run `dlcompare fetch` again to resume") from None
        time.sleep(min(2 ** (attempt - 1), 8) * 0.25)
    if sha256:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            part.with_name(part.name + ".json").unlink(missing_ok=True)
            raise UserError(
                f"{url}: sha256 {actual} does not match data.sha256 {sha256.lower()}; the download was deleted."
                " Check data.url and data.sha256"
            )
    os.replace(part, dest)
    part.with_name(part.name + ".json").unlink(missing_ok=True)
    return dest


def _kaggle_download(dest_dir: Path) -> Path:
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", "~/.kaggle")).expanduser() / "kaggle.json"
    if not (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")) and not config.exists():
        raise UserError(
            "data.source = kaggle needs Kaggle API credentials: save kaggle.json from kaggle.com/settings to"
            " ~/.kaggle/ (or set KAGGLE_USERNAME and KAGGLE_KEY) and accept the dogs-vs-cats competition rules"
        )
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise UserError("data.source = kaggle needs the Kaggle client: pip install 'dlcompare[kaggle]'") from None
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        api = KaggleApi()
        api.authenticate()
        api.competition_download_file("dogs-vs-cats", "train.zip", path=str(dest_dir))
    except Exception as exc:  # the client raises many types; all mean "could not download"
        raise UserError(f"Kaggle download of dogs-vs-cats/train.zip failed: {exc}; {OTHER_WAYS}") from None
    return dest_dir / "train.zip"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: copy instead
        shutil.copy2(src, dst)


def project_root(cwd: Path | None = None) -> Path:
    """The project the user works in, also from a DVC experiment's temporary copy (.dvc/tmp/exps/<name>/).

    `dvc exp run --queue` and `--temp` run each stage in such a copy, so a
    relative path in params.yaml must be taken from the project root, not
    from where the stage happens to run.
    """
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def source_path(source: str, cwd: Path | None = None) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else project_root(cwd) / path


def fetch(params: DataParams, out_dir: Path = Path("data/raw"), downloads: Path = DOWNLOADS) -> Path:
    """Place the data under `out_dir` (replacing it whole) and return the placed path."""
    if params.source == "download":
        name = Path(urlparse(params.url).path).name
        if name in ("", ".", ".."):  # a URL ending in / or /..: never let it name a folder
            name = "download.zip"
        origin = download(params.url, downloads / name, params.sha256, max_bytes=params.max_bytes)
    elif params.source == "kaggle":
        origin = _kaggle_download(downloads)
    else:
        origin = source_path(params.source)
        if not origin.exists():
            raise UserError(f"data.source = '{params.source}' ({origin}): no such file or folder; {OTHER_WAYS}, or 'download'")
    if origin.is_dir() and Path(out_dir).resolve().is_relative_to(origin.resolve()):
        raise UserError(f"data.source = '{params.source}' ({origin}) contains the output folder {out_dir}, so it would"
                        " copy itself; point data.source at the folder that holds the photos")
    open_source(origin)  # refuse hostile or unreadable input before writing anything

    with building_dir(out_dir) as work:
        if origin.is_dir():
            shutil.copytree(origin, work / origin.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(origin), str(work / origin.name))
    return Path(out_dir) / origin.name
