"""Framework-neutral training batches: the same augmented floats for everyone.

Batch `step` of epoch `epoch` is a pure function of (seed, epoch, step):
the epoch's shuffle comes from a generator seeded with (seed, epoch), each
batch's augmentation from one seeded with (seed, epoch, step). Every
framework therefore sees identical batches in identical order, a resumed run
sees what an uninterrupted one would have, and any batch can be produced on
its own (random access, which any data loader can use).

Augmentation is done in NumPy on uint8 pixels read from the memory-mapped
prepared arrays: a horizontal flip and a random shift with reflected borders.
The training loops get an epoch's batches made ahead: by a worker process
into shared memory where a GPU runs the step (`BatchWorker`), else by a thread.
"""

from __future__ import annotations

import functools
import multiprocessing
import queue
import threading
import weakref
from multiprocessing import shared_memory
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

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, flip: bool = True, shift: float = 0.0,
                 ahead: str = "auto"):
        if len(x) < batch_size:
            raise ValueError(f"{len(x)} training images is fewer than one batch of {batch_size}")
        self.x, self.y = x, y.astype(np.float32)
        self.batch_size, self.seed, self.flip = batch_size, seed, flip
        self.max_shift = int(round(shift * x.shape[1]))
        self._order_epoch, self._order = None, None
        # Who makes the epoch's batches ahead of the loop: "process" (BatchWorker), "thread", or "auto": the worker
        # process where this process sees a GPU, else a thread. On a GPU an engine's dispatch holds the interpreter
        # lock, which starves a thread; on the CPU the engines' kernels release it, and the worker process cost
        # tensorflow 2.4 % (`dlcompare ab`, 6 rounds, CI [0.962, 0.991]; pytorch and jax unchanged).
        if ahead not in ("auto", "thread", "process"):
            raise ValueError(f"ahead = {ahead!r}: one of auto, thread, process")
        self.ahead, self._worker = ahead, None

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

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's batches in order, made ahead (see `ahead`): the same arrays as `batch` either way."""
        if self.ahead == "thread" or (self.ahead == "auto" and not gpu_visible()):
            return prefetched((self.batch(epoch, step) for step in range(self.steps)), 2)
        if self._worker is None:
            self._worker = BatchWorker(self)  # started on first use, one per run
        return self._worker.epoch(epoch)

    # A worker process gets a copy of this object: memory-mapped images travel as their file and place in it.
    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_worker": None}
        state["x"] = _file_view(self.x) or self.x
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["x"], FileView):
            path, offset, shape, dtype = state["x"]
            state["x"] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


@functools.cache
def gpu_visible() -> bool:
    from dlcompare.machine import gpus

    return gpus() != "none"


class FileView(tuple):
    """(path, byte offset, shape, dtype) of a C-contiguous view into a memory-mapped file."""


def _file_view(array: np.ndarray) -> FileView | None:
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or root.filename is None or not array.flags.c_contiguous:
        return None
    return FileView((root.filename, root.offset + array.ctypes.data - root.ctypes.data, array.shape, array.dtype.str))


class BatchWorker:
    """A process that makes one TrainBatches' batches ahead of the training loop, into shared memory.

    A process, not a thread: making a batch takes the interpreter lock for each of its NumPy calls and each
    image of its per-image loop, and a thread waits up to the switch interval (5 ms) for it every time the
    training loop's own Python holds it, as an engine's dispatch on a GPU does. Beside a busy Python loop a
    thread made one batch per 86 ms against 1.8 ms alone (docs/journal/2026-12-03-gpu-fairness.md); a process
    has an interpreter of its own. The worker fills `SLOTS` slots of shared memory in order; the loop copies
    each batch out and hands its slot back. An epoch that the loop leaves early is abandoned by the worker
    at its next batch (each request carries a generation number).
    """

    SLOTS = 3  # a batch being copied out, one ready, one being made

    def __init__(self, batches: TrainBatches):
        b, shape = batches.batch_size, batches.x.shape[1:]
        self.images_shape, self.labels_shape = (self.SLOTS, b, *shape), (self.SLOTS, b, 1)
        size = int(np.prod(self.images_shape)) * 4 + int(np.prod(self.labels_shape)) * 4
        self.memory = shared_memory.SharedMemory(create=True, size=size)
        self.images, self.labels = _slots(self.memory, self.images_shape, self.labels_shape)
        context = multiprocessing.get_context("spawn")  # fork would copy the engines' threads and locks
        self.generation = context.Value("q", 0, lock=False)
        self.requests, self.free, self.full = context.Queue(), context.Queue(), context.Queue()
        for slot in range(self.SLOTS):
            self.free.put(slot)
        self.steps = batches.steps
        self.process = context.Process(target=_work, daemon=True, args=(
            batches, self.memory.name, self.images_shape, self.labels_shape, self.generation, self.requests,
            self.free, self.full))
        self.process.start()
        self._finalizer = weakref.finalize(self, _stop, self.process, self.requests, self.free, self.memory)

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.generation.value += 1
        mine = self.generation.value
        self.requests.put((mine, epoch))
        for _ in range(self.steps):
            while True:
                generation, slot, error = self._next()
                if generation == mine:
                    break
                if slot is not None:
                    self.free.put(slot)  # a batch of an epoch the loop left early
            if error is not None:
                self.free.put(slot)
                raise error
            images, labels = self.images[slot].copy(), self.labels[slot].copy()
            self.free.put(slot)
            yield images, labels

    def _next(self):
        while True:
            try:
                return self.full.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"the batch worker process died (exit code {self.process.exitcode})") from None


def _slots(memory: shared_memory.SharedMemory, images_shape: tuple, labels_shape: tuple):
    images = np.ndarray(images_shape, np.float32, buffer=memory.buf)
    labels = np.ndarray(labels_shape, np.float32, buffer=memory.buf, offset=images.nbytes)
    return images, labels


def _work(batches: TrainBatches, name: str, images_shape, labels_shape, generation, requests, free, full) -> None:
    """The worker process: each request (generation, epoch) becomes that epoch's batches, in order."""
    from dlcompare.lifetime import die_with_parent

    die_with_parent()  # a killed training run takes its worker with it
    memory = shared_memory.SharedMemory(name=name)
    images, labels = _slots(memory, images_shape, labels_shape)
    while (request := requests.get()) is not None:
        mine, epoch = request
        for step in range(batches.steps):
            slot = free.get()
            if slot is None:  # stopped mid-epoch
                return
            if generation.value != mine:  # the loop has moved on to another epoch
                free.put(slot)
                break
            try:
                images[slot], labels[slot] = batches.batch(epoch, step)
            except Exception as error:  # handed to the loop, which raises it
                full.put((mine, slot, error))
                break
            full.put((mine, slot, None))
    del images, labels
    memory.close()


def _stop(process, requests, free, memory: shared_memory.SharedMemory) -> None:
    requests.put(None)  # between epochs
    free.put(None)  # in the middle of one
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
    memory.close()
    memory.unlink()


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
    """Iterate `items` in a background thread, `depth` ahead (validation and test batches: a pass over them is short,
    and a thread starts at once)."""
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
