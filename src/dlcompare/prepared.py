"""Read what `prepare` wrote: memory-mapped split arrays and the class names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dlcompare.errors import UserError


def load_info(prepared: Path, image_size: int) -> dict:
    info_file = Path(prepared) / "info.json"
    if not info_file.exists():
        raise UserError(f"{prepared}: no prepared data; run `dlcompare prepare` (or `dvc repro prepare`) first")
    info = json.loads(info_file.read_text())
    if info["image_size"] != image_size:
        raise UserError(
            f"{prepared} holds {info['image_size']} px images but prepare.image_size is {image_size};"
            " re-run `dvc repro prepare`"
        )
    if len(info["classes"]) != 2:
        raise UserError(f"{prepared}: {len(info['classes'])} classes {info['classes']}; the CNN is a binary classifier, give exactly two")
    return info


def load_split(prepared: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 memory map (n, S, S, 3), labels uint8 (n,)) of one split."""
    return np.load(Path(prepared) / f"{split}_x.npy", mmap_mode="r"), np.load(Path(prepared) / f"{split}_y.npy")


def split_paths(prepared: Path, split: str) -> list[str]:
    """Archive paths of a split's images, in the order of its arrays."""
    manifest = pd.read_csv(Path(prepared) / "manifest.csv", keep_default_na=False)
    return manifest.loc[manifest["split"] == split, "path"].tolist()
