"""Run one framework through every equivalence probe and save what it computed (run as a script).

    python tests/framework_probe.py FRAMEWORK PREPARED_DIR OUT.npz

Each framework runs in a process of its own (Keras holds one backend per
process); test_equivalence.py compares the saved arrays with the reference
framework's (REFERENCE, below). Every probe uses the real prepared photos.
"""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dlcompare import frameworks
from dlcompare.batches import TrainBatches
from dlcompare.frameworks.base import TrainingSession
from dlcompare import architectures
from dlcompare.params import TrainParams
from dlcompare.prepared import load_split

SHARED = dict(image_size=32, bn_momentum=0.9, bn_epsilon=1e-3)
SPECS = {  # tiny versions of each preset; every option that changes the code path is on in one of them
    "bn_global_avg": lambda dropout: architectures.PlainCNN(**SHARED, batch_norm=True, dense_units=0, dropout=dropout,
                                                     filters=(8, 16, 16), convs_per_block=1, kernel_size=3, head="global_avg"),
    "bias_flatten_dense": lambda dropout: architectures.PlainCNN(**SHARED, batch_norm=False, dense_units=12, dropout=dropout,
                                                          filters=(8, 16), convs_per_block=2, kernel_size=3, head="flatten"),
    # stage0/block0 has an identity shortcut, stage1/block0 a strided 1x1 projection; gammas of every conv1 start at 0;
    # the second strides its stem
    "resnet_bn": lambda dropout: architectures.ResNet(**SHARED, batch_norm=True, dense_units=0, dropout=dropout,
                                               stem_width=8, stem_stride=1, widths=(8, 16), blocks_per_stage=2, zero_init_residual=True),
    "resnet_bias_dense": lambda dropout: architectures.ResNet(**SHARED, batch_norm=False, dense_units=12, dropout=dropout,
                                                       stem_width=8, stem_stride=2, widths=(8, 12), blocks_per_stage=1, zero_init_residual=False),
}
FIT_SPECS = {"plain_cnn": "bn_global_avg", "resnet": "resnet_bn"}  # preset -> the spec its fit and save probes use
SEED = 7
STEP_RATES = (1e-2, 5e-3, 5e-3)
FIT = dict(epochs=3, batch_size=16, learning_rate=5e-3, lr_schedule="cosine", min_learning_rate=1e-4)
DROPOUT_RATE = 0.3
# Adam divides by sqrt(v) + epsilon per element, so a weight whose gradient is at float32 rounding level moves by
# up to the whole step in a direction rounding decides. At Keras' 1e-7 one kernel element of 576 in the residual
# probes differed by 2.9e-4 after two steps (pytorch against the reference) and the residual fit by 4.6e-3; at
# 1e-4 the worst step differs by 2.4e-6 and the worst fit by 5.6e-4 (2026-12-02). The epsilon conventions still
# differ by far more at 1e-4 than at 1e-7, so the Keras-epsilon adapters stay checked.
ADAM_EPSILON = 1e-4
# Residual unfairnesses planted in the reference (and in every framework that can be one), to show the tolerances
# would catch each.
RESIDUAL_FAULTS = ("same_padding_at_stride_2", "shortcut_without_batch_norm", "zero_gamma_ignored")


def built(module, spec: architectures.Architecture, weights: dict | None = None, **train):
    implementation = module.Implementation(spec, TrainParams(**{"learning_rate": 1e-2, "adam_epsilon": ADAM_EPSILON, **train}), SEED)
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


def fit(module, prepared: Path, preset: str, planted: str = "") -> tuple[dict, list]:
    x, y = load_split(prepared, "train")
    x_val, y_val = load_split(prepared, "val")
    spec = SPECS[FIT_SPECS[preset]](0.0)
    implementation = built(module, spec, **FIT)
    batch_type = FirstEpochOrder if planted == "batch_order" else TrainBatches
    with tempfile.TemporaryDirectory() as checkpoints:
        session = PlantedSession(train=implementation.train, seed=SEED, val_x=x_val, val_y=y_val,
                                 batches=batch_type(x, y, FIT["batch_size"], seed=SEED, shift=0.125),
                                 checkpoint_dir=Path(checkpoints))
        session.planted = planted
        implementation.fit(session)
    return implementation.weights(), session.ordered_history()


@contextmanager
def tensorflow_fault(module, fault: str):
    """Plant `fault` in low-level TensorFlow's implementation while the block runs."""
    import tensorflow as tf

    conv2d, conv_norm = tf.nn.conv2d, module.Network.conv_norm

    def same_at_stride_2(x, filters, strides, padding, **options):  # TensorFlow's "SAME": bottom and right only
        return conv2d(x, filters, strides, "SAME" if strides > 1 else padding, **options)

    def shortcut_without_batch_norm(self, x, conv, training):
        if conv.name.endswith("shortcut"):
            v = self.variables_by_name
            unused = 0.0 * (tf.reduce_sum(v[f"{conv.name}/bn/gamma"]) + tf.reduce_sum(v[f"{conv.name}/bn/beta"]))
            return tf.nn.conv2d(x, v[f"{conv.name}/kernel"], conv.stride, "VALID") + unused  # a zero gradient, not None
        return conv_norm(self, x, conv, training)

    if fault == "same_padding_at_stride_2":
        tf.nn.conv2d = same_at_stride_2
    elif fault == "shortcut_without_batch_norm":
        module.Network.conv_norm = shortcut_without_batch_norm
    try:
        yield
    finally:
        tf.nn.conv2d, module.Network.conv_norm = conv2d, conv_norm


@contextmanager
def pytorch_fault(module, fault: str):
    """Plant `fault` in PyTorch's implementation while the block runs (the same three as tensorflow_fault)."""
    import torch.nn.functional as F

    conv_forward, block_forward = module.nn.Conv2d.forward, module.BasicBlock.forward

    def same_at_stride_2(self, x):  # TensorFlow's "SAME" at stride 2: the odd padding pixel at the bottom and right
        if self.stride[0] == 1 or self.padding[0] == 0:
            return conv_forward(self, x)
        total = max(self.kernel_size[0] - self.stride[0], 0)
        x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0)

    def shortcut_without_batch_norm(self, x):  # the shortcut's batch norm gets no gradient: Adam leaves it alone
        y = self.conv1_bn(self.conv1(F.relu(self.conv0_bn(self.conv0(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))

    if fault == "same_padding_at_stride_2":
        module.nn.Conv2d.forward = same_at_stride_2
    elif fault == "shortcut_without_batch_norm":
        module.BasicBlock.forward = shortcut_without_batch_norm
    try:
        yield
    finally:
        module.nn.Conv2d.forward, module.BasicBlock.forward = conv_forward, block_forward


# Frameworks that can be the reference, in order of preference, with the code that plants the residual faults in
# each: the first one installed is the reference (low-level TensorFlow, where every formula is written out; PyTorch
# on a machine without TensorFlow, such as the GPU machines). Every one of them that is installed plants the faults,
# so CI checks both planters.
PLANTERS = {"tensorflow": tensorflow_fault, "pytorch": pytorch_fault}
INSTALLED = [name for name in frameworks.NAMES if not frameworks.missing_packages(name)]
REFERENCE = next(name for name in PLANTERS if name in INSTALLED)


def forward_and_steps(module, spec_of, images, batches, weights=None) -> dict[str, np.ndarray]:
    """The forward passes and three optimiser steps the equivalence tests compare, keyed without the spec's name."""
    out = {}
    implementation = built(module, spec_of(DROPOUT_RATE), weights)
    out.update({f"init/{n}": v for n, v in implementation.weights().items()})
    out["forward_inference"] = implementation.forward(images, training=False)

    # Training mode: batch statistics (and moving-statistic updates); dropout off, its stream is the framework's own.
    implementation = built(module, spec_of(0.0), weights)
    out["forward_training"] = implementation.forward(images, training=True)
    out.update({f"after_training_forward/{n}": v for n, v in implementation.weights().items()})

    implementation = built(module, spec_of(0.0), weights)
    for step, rate in enumerate(STEP_RATES):
        implementation.train_batch(*batches.batch(0, step), rate)
        out.update({f"step{step}/{n}": v for n, v in implementation.weights().items()})
    return out


def probe(name: str, prepared: Path) -> dict[str, np.ndarray]:
    module = frameworks.load(name)
    x, y = load_split(prepared, "train")
    images, labels = TrainBatches(x, y, 16, seed=0, shift=0.125).batch(0, 0)
    out: dict[str, np.ndarray] = {}

    for arch, spec_of in SPECS.items():
        computed = forward_and_steps(module, spec_of, images, TrainBatches(x, y, 16, seed=0, shift=0.125))
        out.update({f"{arch}/{key}": value for key, value in computed.items()})

    for preset in FIT_SPECS:
        weights, history = fit(module, prepared, preset)
        out.update({f"fit/{preset}/{n}": v for n, v in weights.items()})
        out[f"fit_history/{preset}"] = np.array([[epoch[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")]
                                                 for epoch in history])
    if name in PLANTERS:
        for planted in ("schedule_offset", "batch_order"):
            weights, _ = fit(module, prepared, "plain_cnn", planted)
            out.update({f"planted_{planted}/{n}": v for n, v in weights.items()})
        spec_of = SPECS["resnet_bn"]
        for fault in RESIDUAL_FAULTS:
            weights = spec_of(0.0).initial_weights(SEED)
            if fault == "zero_gamma_ignored":
                weights = {n: np.ones_like(v) if n.endswith("gamma") else v for n, v in weights.items()}
            with PLANTERS[name](module, fault):
                computed = forward_and_steps(module, spec_of, images, TrainBatches(x, y, 16, seed=0, shift=0.125), weights)
            out.update({f"planted_{fault}/{key}": value for key, value in computed.items()})

    # Dropout: the last block's ReLU output is made positive everywhere (large batch-norm beta) and the output
    # kernel reads one unit, so each image's logit is that unit times its dropout mask bit / (1 - rate).
    all_images = TrainBatches(x, y, len(x) // 2 * 2, seed=0, flip=False).batch(0, 0)[0]
    for rate in (0.0, DROPOUT_RATE):
        spec = SPECS["bn_global_avg"](rate)
        weights = spec.initial_weights(SEED)
        last = spec.convs()[-1].name
        weights[f"{last}/bn/beta"] = np.full_like(weights[f"{last}/bn/beta"], 3.0)
        weights["output/kernel"] = np.eye(weights["output/kernel"].shape[0], 1, dtype=np.float32)
        out[f"dropout/{rate}"] = built(module, spec, weights).forward(all_images, training=True)

    # Save, reload with the framework's own loader, predict: the same as the in-memory model.
    for preset, arch in FIT_SPECS.items():
        implementation = built(module, SPECS[arch](DROPOUT_RATE))
        implementation.train_batch(images, labels, 1e-2)  # moving statistics and weights away from their start
        with tempfile.TemporaryDirectory() as directory:
            implementation.save(Path(directory))
            out[f"reloaded_predictor/{preset}"] = module.load_predictor(Path(directory))(images)
        out[f"in_memory_forward/{preset}"] = implementation.forward(images, training=False)
    out["runtime"] = np.array(json.dumps(implementation.runtime))
    return out


if __name__ == "__main__":
    framework, prepared_dir, output = sys.argv[1:]
    np.savez(output, **probe(framework, Path(prepared_dir)))
