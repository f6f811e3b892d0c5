"""Framework-neutral training batches: the same augmented floats for everyone.

Batch `step` of epoch `epoch` is a pure function of (seed, epoch, step):
the epoch's shuffle comes from a generator seeded with (seed, epoch), each
batch's augmentation from one seeded with (seed, epoch, step). Every
framework therefore sees identical batches in identical order, a resumed run
sees what an uninterrupted one would have, and any batch can be produced on
its own (random access, which any data loader can use).

Augmentation is done in NumPy on uint8 pixels read from the memory-mapped
prepared arrays: a horizontal flip and a random shift with reflected borders.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

SCALE = np.float32(1.0 / 255.0)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], the model's input."""
    return pixels.astype(np.float32) * SCALE


def flip_and_shift(pixels: np.ndarray, rng: np.random.Generator, flip: bool, max_shift: int) -> np.ndarray:
    """Randomly mirror each image left-right and move it by up to max_shift pixels."""
    out = pixels.copy()
    n, height, width, _ = pixels.shape
    if flip:
        mirrored = rng.random(n) < 0.5
        out[mirrored] = out[mirrored, :, ::-1]
    if max_shift:
        padded = np.pad(out, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="reflect")
        dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
        for i in range(n):
            out[i] = padded[i, dy[i] : dy[i] + height, dx[i] : dx[i] + width]
    return out


class TrainBatches:
    """Shuffled, augmented batches of a training split; the last partial batch is dropped."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, flip: bool = True, shift: float = 0.0):
        if len(x) < batch_size:
            raise ValueError(f"{len(x)} training images is fewer than one batch of {batch_size}")
        self.x, self.y = x, y.astype(np.float32)
        self.batch_size, self.seed, self.flip = batch_size, seed, flip
        self.max_shift = int(round(shift * x.shape[1]))
        self._order_epoch, self._order = None, None

    @property
    def steps(self) -> int:
        return len(self.x) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
            self._order_epoch = epoch
        return self._order

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(images float32 (B, S, S, 3), labels float32 (B, 1)) of one step."""
        if not 0 <= step < self.steps:
            raise IndexError(step)
        chosen = np.sort(self.order(epoch)[step * self.batch_size : (step + 1) * self.batch_size])
        rng = np.random.default_rng([self.seed, epoch, step])
        pixels = flip_and_shift(self.x[chosen], rng, self.flip, self.max_shift)
        return to_float(pixels), self.y[chosen, None]

    def epoch(self, epoch: int, prefetch: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's batches in order, prepared in a background thread."""
        return prefetched((self.batch(epoch, step) for step in range(self.steps)), prefetch)


class EvalBatches:
    """Un-augmented batches in order, the last one possibly smaller (validation, test)."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int):
        self.x, self.batch_size = x, batch_size
        self.y = None if y is None else y.astype(np.float32)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def batch(self, index: int):
        """Images float32 (B, S, S, 3), and labels (B, 1) if the split has them."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images = to_float(np.asarray(self.x[window]))
        return images if self.y is None else (images, self.y[window, None])

    def __iter__(self):
        return prefetched((self.batch(i) for i in range(len(self))), 2)


def prefetched(items: Iterator, depth: int) -> Iterator:
    """Iterate `items` in a background thread, `depth` ahead (NumPy releases the GIL)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                buffer.put(item)
            buffer.put(done)
        except BaseException as error:  # hand the failure to the consumer
            buffer.put(error)

    threading.Thread(target=produce, daemon=True).start()
    while True:
        item = buffer.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
