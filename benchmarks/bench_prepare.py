"""Prepare throughput on the real 10k Kaggle subset: images/s end to end.

End to end means what `dlcompare prepare` does: read the zip, hash, fully
decode, convert, resize and write the split arrays and manifest. Run with
`make bench`; prints one line per configuration (median of --repeats runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from dlcompare.params import PrepareParams
from dlcompare.prepare import prepare

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "dogs-vs-cats-train-10k.zip"


def measure(source: Path, image_size: int, workers: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            metrics = prepare(source, Path(scratch) / "prepared", Path(scratch) / "data.json",
                              PrepareParams(image_size=image_size, workers=workers))
            rates.append(metrics["images_per_s"])
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--image-size", type=int, default=PrepareParams().image_size)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"prepare {args.source.name} at {args.image_size}px, median of {args.repeats} runs, {cores} cores available")
    for workers in sorted({1, cores}):
        rate = measure(args.source, args.image_size, workers, args.repeats)
        print(f"  workers={workers}: {rate:8.0f} images/s")


if __name__ == "__main__":
    main()
