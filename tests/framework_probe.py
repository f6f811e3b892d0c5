"""Run one framework through every equivalence probe and save what it computed (run as a script).

    python tests/framework_probe.py FRAMEWORK PREPARED_DIR OUT.npz

Each framework runs in a process of its own (Keras holds one backend per
process); test_equivalence.py compares the saved arrays with the reference
framework's. Every probe uses the real prepared photos.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from dlcompare import frameworks
from dlcompare.batches import TrainBatches
from dlcompare.frameworks.base import TrainingSession
from dlcompare.model_spec import ModelSpec
from dlcompare.params import TrainParams
from dlcompare.prepared import load_split

SPECS = {
    "bn_global_avg": dict(filters=(8, 16, 16), convs_per_block=1, batch_norm=True, head="global_avg", dense_units=0),
    "bias_flatten_dense": dict(filters=(8, 16), convs_per_block=2, batch_norm=False, head="flatten", dense_units=12),
}
SEED = 7
STEP_RATES = (1e-2, 5e-3, 5e-3)
FIT = dict(epochs=3, batch_size=16, learning_rate=5e-3, lr_schedule="cosine", min_learning_rate=1e-4)
DROPOUT_RATE = 0.3


def make_spec(dropout: float, **architecture) -> ModelSpec:
    return ModelSpec(image_size=32, kernel_size=3, bn_momentum=0.9, bn_epsilon=1e-3, dropout=dropout, **architecture)


def built(module, spec: ModelSpec, weights: dict | None = None, **train):
    implementation = module.Implementation(spec, TrainParams(**{"learning_rate": 1e-2, **train}), SEED)
    implementation.build(spec.initial_weights(SEED) if weights is None else weights)
    return implementation


class PlantedSession(TrainingSession):
    """The reference's own loop with one planted unfairness, to show the tolerance would catch it."""

    planted: str = ""

    def learning_rate(self, epoch):
        return super().learning_rate(epoch + 1 if self.planted == "schedule_offset" else epoch)


class FirstEpochOrder(TrainBatches):
    def batch(self, epoch, step):
        return super().batch(0, step)  # planted: every epoch reuses epoch 0's order and augmentation


def fit(module, prepared: Path, planted: str = "") -> tuple[dict, list]:
    x, y = load_split(prepared, "train")
    x_val, y_val = load_split(prepared, "val")
    spec = make_spec(0.0, **SPECS["bn_global_avg"])
    implementation = built(module, spec, **FIT)
    batch_type = FirstEpochOrder if planted == "batch_order" else TrainBatches
    with tempfile.TemporaryDirectory() as checkpoints:
        session = PlantedSession(train=implementation.train, seed=SEED, val_x=x_val, val_y=y_val,
                                 batches=batch_type(x, y, FIT["batch_size"], seed=SEED, shift=0.125),
                                 checkpoint_dir=Path(checkpoints))
        session.planted = planted
        implementation.fit(session)
    return implementation.weights(), session.ordered_history()


def probe(name: str, prepared: Path) -> dict[str, np.ndarray]:
    module = frameworks.load(name)
    x, y = load_split(prepared, "train")
    images, labels = TrainBatches(x, y, 16, seed=0, shift=0.125).batch(0, 0)
    out: dict[str, np.ndarray] = {}

    for arch, architecture in SPECS.items():
        implementation = built(module, make_spec(DROPOUT_RATE, **architecture))
        out.update({f"init/{arch}/{n}": v for n, v in implementation.weights().items()})
        out[f"forward_inference/{arch}"] = implementation.forward(images, training=False)

        # Training mode: batch statistics (and moving-statistic updates); dropout off, its stream is the framework's own.
        implementation = built(module, make_spec(0.0, **architecture))
        out[f"forward_training/{arch}"] = implementation.forward(images, training=True)
        out.update({f"after_training_forward/{arch}/{n}": v for n, v in implementation.weights().items()})

        implementation = built(module, make_spec(0.0, **architecture))
        batches = TrainBatches(x, y, 16, seed=0, shift=0.125)
        for step, rate in enumerate(STEP_RATES):
            implementation.train_batch(*batches.batch(0, step), rate)
            out.update({f"step{step}/{arch}/{n}": v for n, v in implementation.weights().items()})

    weights, history = fit(module, prepared)
    out.update({f"fit/{n}": v for n, v in weights.items()})
    out["fit_history"] = np.array([[epoch[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")]
                                   for epoch in history])
    if name == REFERENCE:
        for planted in ("schedule_offset", "batch_order"):
            weights, _ = fit(module, prepared, planted)
            out.update({f"planted_{planted}/{n}": v for n, v in weights.items()})

    # Dropout: the last block's ReLU output is made positive everywhere (large batch-norm beta) and the output
    # kernel reads one unit, so each image's logit is that unit times its dropout mask bit / (1 - rate).
    all_images = TrainBatches(x, y, len(x) // 2 * 2, seed=0, flip=False).batch(0, 0)[0]
    for rate in (0.0, DROPOUT_RATE):
        spec = make_spec(rate, **SPECS["bn_global_avg"])
        weights = spec.initial_weights(SEED)
        last = spec.convs()[-1][0]
        weights[f"{last}/bn/beta"] = np.full_like(weights[f"{last}/bn/beta"], 3.0)
        weights["output/kernel"] = np.eye(weights["output/kernel"].shape[0], 1, dtype=np.float32)
        out[f"dropout/{rate}"] = built(module, spec, weights).forward(all_images, training=True)

    # Save, reload with the framework's own loader, predict: the same as the in-memory model.
    spec = make_spec(DROPOUT_RATE, **SPECS["bn_global_avg"])
    implementation = built(module, spec)
    implementation.train_batch(images, labels, 1e-2)  # moving statistics and weights away from their start
    with tempfile.TemporaryDirectory() as directory:
        implementation.save(Path(directory))
        out["reloaded_predictor"] = module.load_predictor(Path(directory))(images)
    out["in_memory_forward"] = implementation.forward(images, training=False)
    out["runtime"] = np.array(json.dumps(implementation.runtime))
    return out


REFERENCE = "tensorflow"

if __name__ == "__main__":
    framework, prepared_dir, output = sys.argv[1:]
    np.savez(output, **probe(framework, Path(prepared_dir)))
