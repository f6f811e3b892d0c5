"""Deterministic stratified train/val/test split (a pure function)."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from dlcompare.errors import UserError


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(
    keys: list[str],
    labels: list[str],
    test_fraction: float,
    val_fraction: float,
    seed: int,
    max_per_class: int | None = None,
) -> list[str]:
    """Give each item 'train', 'val', 'test' or 'capped'.

    Items are ordered within their class by a hash of (seed, key); the key is
    the image's content hash, so an image lands in the same split whatever
    the archive layout or file order. `test_fraction` is of the whole class
    (the paper's 80:20); `val_fraction` is of what remains for training.
    """
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    splits = ["train"] * len(keys)
    for label, members in sorted(by_class.items()):
        members.sort(key=lambda i: _rank(seed, keys[i]))
        if max_per_class is not None:
            for index in members[max_per_class:]:
                splits[index] = "capped"
            members = members[:max_per_class]
        n_test = round(len(members) * test_fraction)
        n_val = round((len(members) - n_test) * val_fraction)
        if n_test < 1 or len(members) - n_test - n_val < 1 or (val_fraction > 0 and n_val < 1):
            remedy = "raise prepare.max_per_class" if max_per_class is not None else "add images"
            raise UserError(
                f"class '{label}' has only {len(members)} usable images, too few for"
                f" prepare.test_fraction/val_fraction; {remedy} or lower those fractions"
            )
        for index in members[:n_test]:
            splits[index] = "test"
        for index in members[n_test : n_test + n_val]:
            splits[index] = "val"
    return splits
