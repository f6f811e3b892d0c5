"""The small interface every framework implements, and the training session they share.

A framework file only has to build each architecture it implements (`dlcompare.architectures`), load the
canonical initial weights, run its own idiomatic training loop and save the
model in its native format. Everything around that (batches, learning-rate
schedule, per-epoch bookkeeping, dvclive curves, resume history, timing) is
here, written once, so the frameworks differ only where they really differ.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dlcompare.atomic import write_text
from dlcompare.batches import TrainBatches
from dlcompare.architectures import Architecture
from dlcompare.params import TrainParams

VALIDATION_BATCH = 256  # inference only: bigger is faster and changes no result
EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def learning_rate(train: TrainParams, epoch: int) -> float:
    """The learning rate of `epoch`: a linear warm-up, then constant or cosine decay towards min_learning_rate.

    Warm-up epoch w of W trains at (w + 1) / (W + 1) of learning_rate, so none
    trains at 0. The cosine starts after the warm-up and reaches
    min_learning_rate one epoch after the last, so every epoch trains (ending at
    the minimum made `epochs=2` one epoch of learning when the minimum is 0).
    """
    warmup = train.warmup_epochs
    if epoch < warmup:
        return train.learning_rate * (epoch + 1) / (warmup + 1)
    if train.lr_schedule == "constant":
        return train.learning_rate
    progress = (epoch - warmup) / (train.epochs - warmup)
    low, high = train.min_learning_rate, train.learning_rate
    return low + 0.5 * (high - low) * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainingSession:
    """What a framework's training loop needs, and where it reports each epoch.

    The loop calls `epoch_begin(epoch)`, `validation_begin(epoch)` and
    `epoch_end(epoch, logs)`; the session times the phases, keeps the
    history next to the checkpoint (so a resumed run reports every epoch)
    and reports each finished epoch to `on_epoch` (the progress line).
    """

    train: TrainParams
    seed: int
    batches: TrainBatches
    val_x: np.ndarray
    val_y: np.ndarray
    checkpoint_dir: Path
    on_epoch: Callable[[int, dict], None] = lambda epoch, logs: None
    history: dict[int, dict] = field(default_factory=dict)
    _started: float = 0.0
    _train_seconds: float = 0.0

    @property
    def history_file(self) -> Path:
        return self.checkpoint_dir / "history.json"

    def load_history(self) -> None:
        if self.history_file.exists():
            self.history = {int(k): v for k, v in json.loads(self.history_file.read_text()).items()}

    def learning_rate(self, epoch: int) -> float:
        return learning_rate(self.train, epoch)

    def epoch_begin(self, epoch: int) -> None:
        self._started = time.perf_counter()

    def validation_begin(self, epoch: int) -> None:
        self._train_seconds = time.perf_counter() - self._started

    def epoch_end(self, epoch: int, logs: dict) -> None:
        record = {key: float(logs[key]) for key in EPOCH_KEYS}
        record["learning_rate"] = self.learning_rate(epoch)
        record["train_seconds"] = self._train_seconds
        record["seconds"] = time.perf_counter() - self._started
        self.history[epoch] = record
        write_text(self.history_file, json.dumps(self.history, indent=1))
        self.on_epoch(epoch, record)

    def ordered_history(self) -> list[dict]:
        return [self.history[epoch] for epoch in range(self.train.epochs)]


class Framework(ABC):
    """One framework's complete model (every preset it implements) + training loop."""

    def __init__(self, spec: Architecture, train: TrainParams, seed: int):
        self.spec, self.train, self.seed = spec, train, seed

    @abstractmethod
    def build(self, weights: dict[str, np.ndarray]) -> None:
        """Create the model and optimiser and load the canonical initial weights."""

    @abstractmethod
    def weights(self) -> dict[str, np.ndarray]:
        """Current weights under their canonical names and layouts."""

    @abstractmethod
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Probabilities of class 1, shape (batch,); training=True uses batch statistics."""

    @abstractmethod
    def train_batch(self, x: np.ndarray, y: np.ndarray, learning_rate: float) -> None:
        """One optimiser step on one batch."""

    @abstractmethod
    def fit(self, session: TrainingSession) -> None:
        """Train for session.train.epochs, resuming from session.checkpoint_dir if it holds a checkpoint."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Save the trained model in the framework's native format."""
