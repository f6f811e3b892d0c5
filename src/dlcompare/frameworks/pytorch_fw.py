"""PyTorch: each architecture as a `torch.nn.Module`, trained with the usual explicit loop.

`model.train()` / `model.eval()`, `torch.optim.Adam`, a checkpoint of the
model's and the optimiser's state dicts after every epoch, and the trained
model saved as a state dict (`torch.save`) next to the architecture it needs
(`spec.json`). Images arrive as the shared NHWC
batches; viewed as NCHW they are already in `channels_last` memory, the
layout PyTorch's CPU convolutions are fastest in, so the model is kept there.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlcompare.batches import EvalBatches
from dlcompare.frameworks import runtime_torch as runtime
from dlcompare.frameworks.base import VALIDATION_BATCH, Framework
from dlcompare import architectures

# Plugs this file into the shared harness; counted apart from its own lines (dlcompare/effort.py).
HARNESS_ADAPTERS = ('BatchNorm2d', 'KerasEpsilonAdam', 'state_key', 'to_torch_layout', 'to_canonical_layout', 'weights', 'forward', 'train_batch')

MODEL_FILE = "model.pt"


# ---- model: the network, written as a PyTorch user would write it
class BatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose moving variance follows the biased batch variance, as in Keras, TensorFlow and JAX.

    torch's own layer moves towards the unbiased n/(n - 1) estimate (2.4e-4
    apart at n = 2048); the normalisation itself is the same. The moving
    statistics are taken from the ones the normalisation computed (its mean and
    1/sqrt(variance + eps)): a second pass over the activations (`x.var`) took a
    quarter of the training step on the CPU (docs/performance.md).
    """

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        out, mean, inverse_std = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(inverse_std.pow(-2) - self.eps, self.momentum)
        return out


def conv(c: architectures.Conv, spec) -> nn.Conv2d:
    return nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=not spec.batch_norm)


def norm(c: architectures.Conv, spec) -> nn.Module:
    if not spec.batch_norm:
        return nn.Identity()  # the convolution has the bias
    return BatchNorm2d(c.out_channels, eps=spec.bn_epsilon, momentum=1.0 - spec.bn_momentum)  # torch's momentum weighs the new batch


def local(c: architectures.Conv) -> str:
    """The attribute a layer has in its parent module: the last part of its canonical name."""
    return c.name.rpartition("/")[2]


class Network(nn.Module):
    """The shared head; each preset's body adds its layers under their canonical names (see `state_key`)."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        head = spec.denses()
        self.dense = nn.Linear(head[0].in_features, spec.dense_units) if spec.dense_units else None
        self.dropout = nn.Dropout(spec.dropout)
        self.output = nn.Linear(head[-1].in_features, 1)

    def forward(self, images):
        """Logits of class 1 for images (B, 3, S, S)."""
        x = self.body(images)
        if self.dense is not None:
            x = F.relu(self.dense(x))
        return self.output(self.dropout(x)).squeeze(1)


class PlainCNN(Network):
    def __init__(self, spec):
        super().__init__(spec)
        self.blocks = []
        for b, convs in enumerate(spec.blocks()):
            layers = OrderedDict()
            for c in convs:
                layers[local(c)], layers[f"{local(c)}_bn"], layers[f"{local(c)}_relu"] = conv(c, spec), norm(c, spec), nn.ReLU()
            layers["pool"] = nn.MaxPool2d(2)
            self.blocks.append(nn.Sequential(layers))
            self.add_module(f"block{b}", self.blocks[-1])

    def body(self, x):
        for block in self.blocks:
            x = block(x)
        # Flatten in height, width, channel order: the canonical layout of the dense kernel.
        return x.mean(dim=(2, 3)) if self.spec.head == "global_avg" else x.permute(0, 2, 3, 1).flatten(1)


class BasicBlock(nn.Module):
    def __init__(self, block: architectures.ResidualBlock, spec):
        super().__init__()
        self.conv0, self.conv0_bn = conv(block.conv0, spec), norm(block.conv0, spec)
        self.conv1, self.conv1_bn = conv(block.conv1, spec), norm(block.conv1, spec)
        self.shortcut = self.shortcut_bn = None
        if block.shortcut:
            self.shortcut, self.shortcut_bn = conv(block.shortcut, spec), norm(block.shortcut, spec)

    def forward(self, x):
        y = F.relu(self.conv0_bn(self.conv0(x)))
        y = self.conv1_bn(self.conv1(y))
        shortcut = x if self.shortcut is None else self.shortcut_bn(self.shortcut(x))
        return F.relu(y + shortcut)


class ResNet(Network):
    def __init__(self, spec):
        super().__init__(spec)
        self.stem, self.stem_bn = conv(spec.stem(), spec), norm(spec.stem(), spec)
        stages: dict[str, OrderedDict] = {}
        for block in spec.residual_blocks():
            stage, name = block.name.split("/")
            stages.setdefault(stage, OrderedDict())[name] = BasicBlock(block, spec)
        self.stages = [nn.Sequential(blocks) for blocks in stages.values()]
        for stage, module in zip(stages, self.stages):
            self.add_module(stage, module)

    def body(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))


NETWORKS = {"plain_cnn": PlainCNN, "resnet": ResNet}


# ---- training: optimiser, loop, saving and loading
class KerasEpsilonAdam(torch.optim.Adam):
    """`torch.optim.Adam` with Keras' epsilon, which every framework here uses.

    torch adds eps to sqrt(v / (1 - beta_2^t)), Keras to sqrt(v); with
    eps_t = eps / sqrt(1 - beta_2^t) the two updates are the same (5 steps of
    the plain eps = 1e-7 moved weights by 1.3e-2 against Keras).
    """

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self.keras_eps = eps

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            state = self.state.get(group["params"][0], {})
            t = int(state.get("step", 0)) + 1
            group["eps"] = self.keras_eps / math.sqrt(1.0 - group["betas"][1] ** t)
        return super().step(closure)


# Canonical weight name <-> state-dict key. Kernels: torch stores conv (out, in, h, w), dense (out, in).
BN_PARTS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def state_key(name: str) -> str:
    """block0/conv0/kernel -> block0.conv0.weight, stage1/block0/shortcut/bn/gamma -> stage1.block0.shortcut_bn.weight."""
    layer, _, part = name.rpartition("/")
    if layer.endswith("/bn"):
        return f"{layer.removesuffix('/bn').replace('/', '.')}_bn.{BN_PARTS[part]}"
    return f"{layer.replace('/', '.')}.{'weight' if part == 'kernel' else 'bias'}"


def to_torch_layout(value: np.ndarray) -> np.ndarray:
    return value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T if value.ndim == 2 else value


def to_canonical_layout(value: np.ndarray) -> np.ndarray:
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T if value.ndim == 2 else value


class Implementation(Framework):
    def build(self, weights):
        self.runtime = runtime.configure(self.train.threads, self.seed)
        self.device = runtime.device()
        self.model = NETWORKS[self.spec.preset](self.spec)
        self.model.load_state_dict({state_key(n): torch.from_numpy(to_torch_layout(v).copy()) for n, v in weights.items()},
                                   strict=False)  # strict=False: batch norm's num_batches_tracked has no canonical twin
        self.model.to(self.device, memory_format=torch.channels_last)
        t = self.train
        self.optimizer = KerasEpsilonAdam(self.model.parameters(), t.learning_rate, (t.adam_beta_1, t.adam_beta_2), t.adam_epsilon)

    def images(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2)  # NHWC memory seen as NCHW: channels_last

    def set_learning_rate(self, learning_rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def train_step(self, x, y):
        labels = torch.from_numpy(y[:, 0]).to(self.device)
        logits = self.model(self.images(x))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        # Tensors, not .item(): reading a value waits for the GPU, so the loop reads them once per epoch.
        return torch.stack([loss.detach(), ((logits > 0) == (labels > 0.5)).float().mean()])

    @torch.no_grad()
    def validate(self, session):
        self.model.eval()
        sums = []
        for x, y in EvalBatches(session.val_x, session.val_y, VALIDATION_BATCH):
            labels = torch.from_numpy(y[:, 0]).to(self.device)
            logits = self.model(self.images(x))
            sums.append(torch.stack([F.binary_cross_entropy_with_logits(logits, labels, reduction="sum"),
                                     ((logits > 0) == (labels > 0.5)).sum().float()]))
        loss_sum, correct = (sum(column) for column in zip(*torch.stack(sums).tolist()))
        return loss_sum / len(session.val_x), correct / len(session.val_x)

    def fit(self, session):
        checkpoint = session.checkpoint_dir / "pytorch.pt"
        start = 0
        if checkpoint.exists():
            state = torch.load(checkpoint, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            start = state["epochs_done"]
        for epoch in range(start, self.train.epochs):
            session.epoch_begin(epoch)
            torch.manual_seed(self.seed << 20 | epoch)  # dropout masks depend on (seed, epoch): a resumed run draws the same
            self.set_learning_rate(session.learning_rate(epoch))
            self.model.train()
            steps = [self.train_step(x, y) for x, y in session.batches.epoch(epoch)]
            train_loss, train_accuracy = np.mean(torch.stack(steps).cpu().numpy().astype(np.float64), axis=0)
            session.validation_begin(epoch)
            val_loss, val_accuracy = self.validate(session)
            session.epoch_end(epoch, {"train_loss": train_loss, "train_accuracy": train_accuracy,
                                      "val_loss": val_loss, "val_accuracy": val_accuracy})
            partial = checkpoint.with_suffix(".partial")
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "epochs_done": epoch + 1}, partial)
            os.replace(partial, checkpoint)  # after the history entry: a kill in between re-runs this epoch

    # Adapters for the equivalence tests (canonical weights, one step, one forward pass).
    def weights(self):
        state = self.model.state_dict()
        return {name: to_canonical_layout(state[state_key(name)].cpu().numpy()).copy() for name in self.spec.shapes()}

    def forward(self, x, training):
        self.model.train(training)
        with torch.no_grad():
            return torch.sigmoid(self.model(self.images(x))).cpu().numpy()

    def train_batch(self, x, y, learning_rate):
        self.set_learning_rate(learning_rate)
        self.model.train()
        self.train_step(x, y)

    def save(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / MODEL_FILE)
        self.spec.save(directory)  # the weights need the architecture to be loaded


def load_predictor(directory: Path, threads: int = 0):
    """A function from float images (B, S, S, 3) to class-1 probabilities (B,)."""
    runtime.configure(threads, seed=0)
    device = runtime.device()
    spec = architectures.load(directory)
    model = NETWORKS[spec.preset](spec)
    model.load_state_dict(torch.load(directory / MODEL_FILE, map_location=device, weights_only=True))
    model.to(device, memory_format=torch.channels_last).eval()

    @torch.no_grad()
    def predict(x):
        return torch.sigmoid(model(torch.from_numpy(x).to(device).permute(0, 3, 1, 2))).cpu().numpy()

    return predict
