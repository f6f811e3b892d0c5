"""Stage `prepare`: raw archive -> validated, de-duplicated, split uint8 arrays.

Reads the archive in place, decodes every image once (in a process pool),
drops bad files with a recorded reason, removes exact duplicates, splits
deterministically and writes one memory-mappable array per split plus a
manifest that accounts for every file seen.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
import zipfile
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from tqdm import tqdm

from dlcompare.atomic import building_dir, write_json
from dlcompare.data.archive import junk_or_non_image, label_of, open_source
from dlcompare.data.images import BadImage, decode_image
from dlcompare.data.split import assign_splits
from dlcompare.errors import UserError
from dlcompare.lifetime import die_with_parent
from dlcompare.machine import available_cores
from dlcompare.params import PrepareParams

SPLITS = ("train", "val", "test")
CHUNK = 128


def find_raw_input(raw_dir: Path) -> Path:
    """The archive or folder that `fetch` left in data/raw."""
    raw_dir = Path(raw_dir)
    if not raw_dir.exists():
        raise UserError(f"{raw_dir}: not found; run `dlcompare fetch` (or `dvc repro fetch`) first")
    if raw_dir.is_file():
        return raw_dir
    children = [p for p in raw_dir.iterdir() if not p.name.startswith(".")]
    if len(children) == 1 and children[0].is_file():
        return children[0]
    return raw_dir


# A zip member that cannot be read while the rest of the archive can: encrypted (RuntimeError), an unsupported
# compression method (NotImplementedError), a bad CRC or a local header that disagrees with the directory
# (BadZipFile), a damaged deflate stream (zlib.error), or a folder file that vanished or is unreadable (OSError).
UNREADABLE = (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error, OSError, EOFError)


# --- worker side: each process opens the source and the pixel buffer once ---
_worker: dict = {}


def _init_worker(source_path: str, pixels_path: str, shape: tuple, size: int, resize: str, max_pixels: int) -> None:
    die_with_parent()  # a decoding worker gets SIGKILL when prepare dies, instead of living on orphaned
    _worker.update(
        source=open_source(Path(source_path)),
        pixels=np.lib.format.open_memmap(pixels_path, mode="r+"),
        size=size,
        resize=resize,
        max_pixels=max_pixels,
    )


def _decode_chunk(chunk: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """Decode entries straight into the shared pixel buffer; return (index, sha256, reason)."""
    results = []
    for index, path in chunk:
        try:
            data = _worker["source"].read(path)
        except UNREADABLE:
            results.append((index, "", "unreadable"))
            continue
        digest = hashlib.sha256(data).hexdigest()
        try:
            _worker["pixels"][index] = decode_image(data, _worker["size"], _worker["resize"], _worker["max_pixels"])
            reason = ""
        except BadImage as bad:
            reason = bad.reason
        results.append((index, digest, reason))
    _worker["pixels"].flush()
    return results


def _resolve_duplicates(rows: list[dict]) -> None:
    """Mark exact duplicates ('duplicate') and bytes filed under two labels ('label_conflict')."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if not row["reason"]:
            groups[row["sha256"]].append(row)
    for copies in groups.values():
        if len({row["label"] for row in copies}) > 1:
            for row in copies:
                row["reason"] = "label_conflict"
        else:
            for row in copies[1:]:  # rows are in path order: the first path is kept
                row["reason"] = "duplicate"


def _check_writable(out_dir: Path, metrics_path: Path) -> None:
    """Fail before decoding anything if an output cannot be written where it must go."""
    for folder in (out_dir.parent, metrics_path.parent):
        existing = next(path for path in (folder, *folder.parents) if path.exists() or path == Path("."))
        if not existing.is_dir():
            raise UserError(f"{existing}: a file is in the way of the output folder {folder}; move it away and run again")
    if metrics_path.is_dir():
        raise UserError(f"{metrics_path}: is a folder, where prepare writes its metrics file; move it away")


def _check_classes(source_path: Path, rows: list[dict], classes: list[str]) -> None:
    """Stop before decoding anything when an expected class has no file at all, saying what there is instead."""
    per_class = Counter(row["label"] for row in rows if row["label"])
    if all(per_class[c] for c in classes):
        return
    unlabelled = Counter(str(PurePosixPath(row["path"]).parent) for row in rows if row["reason"] == "no_label")
    seen = ", ".join(f"{folder}/ {count}" for folder, count in unlabelled.most_common(5)) or "none"
    found = ", ".join(f"{c} {per_class[c]}" for c in classes)
    raise UserError(
        f"{source_path}: expected images of the classes {', '.join(classes)} (prepare.classes), found {found};"
        f" image files without one of those labels, by folder: {seen}. Name files <class>.N.jpg or put them in"
        f" <class>/ folders, or set prepare.classes to the two folder names you use"
    )


def prepare(raw: Path, out_dir: Path, metrics_path: Path, params: PrepareParams) -> dict:
    """Run the whole stage; return the metrics written to `metrics_path`."""
    started = time.perf_counter()
    _check_writable(Path(out_dir), Path(metrics_path))
    source_path = find_raw_input(raw)
    source = open_source(source_path)

    rows = [{"path": e.path, "label": "", "split": "", "reason": junk_or_non_image(e.path) or "", "sha256": ""} for e in source.entries]
    classes = list(params.classes)
    layouts = Counter()
    for row in rows:
        if not row["reason"]:
            row["label"], how = label_of(row["path"], params.classes)
            row["reason"] = "" if row["label"] else "no_label"
            layouts[how] += bool(row["label"])
    _check_classes(source_path, rows, classes)
    layout = "+".join(sorted(how for how in layouts if layouts[how])) or "none"

    with building_dir(out_dir) as work:
        size = params.image_size
        shape = (len(rows), size, size, 3)
        pixels_path = work / "all_pixels.npy"
        np.lib.format.open_memmap(pixels_path, mode="w+", dtype=np.uint8, shape=shape).flush()
        todo = [(i, row["path"]) for i, row in enumerate(rows) if not row["reason"]]
        chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
        workers = params.workers or available_cores()
        init = (str(source_path), str(pixels_path), shape, size, params.resize, params.max_pixels)
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=init) as pool, tqdm(
            total=len(todo), desc="prepare", unit="img", disable=None
        ) as bar:
            try:
                for results in pool.map(_decode_chunk, chunks):
                    for index, digest, reason in results:
                        rows[index]["sha256"] = digest
                        rows[index]["reason"] = reason
                    bar.update(len(results))
            except BrokenProcessPool:
                raise UserError(f"{source_path}: a decoding process died (killed, or out of memory) and nothing was"
                                " written; run again, with a lower prepare.workers or prepare.max_pixels if it recurs") from None

        _resolve_duplicates(rows)
        kept = [row for row in rows if not row["reason"]]
        split_of = assign_splits(
            [row["sha256"] for row in kept],
            [row["label"] for row in kept],
            params.test_fraction,
            params.val_fraction,
            params.seed,
            params.max_per_class,
        )
        for row, split in zip(kept, split_of):
            if split == "capped":
                row["reason"] = "capped"
            else:
                row["split"] = split
        for row in rows:
            if row["reason"]:
                row["split"] = "dropped"

        all_pixels = np.load(pixels_path, mmap_mode="r")
        for split in SPLITS:
            indices = np.array([i for i, row in enumerate(rows) if row["split"] == split], dtype=np.int64)
            x = np.lib.format.open_memmap(work / f"{split}_x.npy", mode="w+", dtype=np.uint8, shape=(len(indices), size, size, 3))
            for start in range(0, len(indices), 1024):
                x[start : start + 1024] = all_pixels[indices[start : start + 1024]]
            x.flush()
            del x
            y = np.array([classes.index(rows[i]["label"]) for i in indices], dtype=np.uint8)
            np.save(work / f"{split}_y.npy", y)
        del all_pixels
        pixels_path.unlink()

        manifest = pd.DataFrame(rows, columns=["path", "label", "split", "reason", "sha256"])
        # Every field quoted: a file name may hold a comma, a quote, or a carriage return.
        manifest.to_csv(work / "manifest.csv", index=False, lineterminator="\n", quoting=csv.QUOTE_ALL)
        info = {"classes": classes, "layout": layout, "source": source_path.name, "image_size": size, "resize": params.resize}
        write_json(work / "info.json", info)

        seconds = time.perf_counter() - started
        dropped = Counter(row["reason"] for row in rows if row["reason"])
        split_counts = {split: {c: sum(1 for r in rows if r["split"] == split and r["label"] == c) for c in classes}
                        for split in SPLITS}
        metrics = {
            "files_seen": len(rows),
            "images_kept": sum(1 for row in rows if row["split"] in SPLITS),
            "dropped": dict(sorted(dropped.items())),
            "duplicates_removed": dropped.get("duplicate", 0),
            "split": split_counts,
            "seconds": round(seconds, 3),
            "images_per_s": round(len(todo) / seconds, 1),
        }
        # Written beside its final name now and renamed right after the folder: the two change together.
        staged_metrics = metrics_path.with_name(f".{metrics_path.name}.staged")
        write_json(staged_metrics, metrics)
    os.replace(staged_metrics, metrics_path)
    return metrics
