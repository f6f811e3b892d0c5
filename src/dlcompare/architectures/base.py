"""What every architecture shares: canonical weight names and shapes, initial weights, FLOPs, saving.

An architecture is a frozen dataclass read from params.yaml `model:` (the
shared keys at its top, the preset's own keys in its sub-section). It lists
its convolutions as `Conv` records in model order; from that list alone come
the canonical weight names every framework uses, their shapes, the NumPy
initial weights (drawn in that order from the run's seed), the parameter
count and the FLOPs. Each framework file builds each preset literally, in its
own idiom, from the preset's own structure (`PlainCNN.blocks()`,
`ResNet.stem()` / `ResNet.residual_blocks()`).

Canonical names: a layer is a path such as `block0/conv0` or
`stage1/block0/shortcut`; its weights are `<layer>/kernel` (conv: height,
width, in, out; dense: in, out), `<layer>/bias`, and with batch norm
`<layer>/bn/{gamma,beta,moving_mean,moving_variance}`. Every convolution pads
kernel // 2 on every side, the same in every framework (TensorFlow's "SAME"
pads only the bottom and right at stride 2, and PyTorch refuses "same" with a
stride, so the frameworks would otherwise compute different functions).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

SPEC_FILE = "spec.json"
BN_PARTS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclass(frozen=True)
class Conv:
    """One k x k convolution, padded kernel_size // 2 on every side (followed by batch norm, or a bias)."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    input_size: int

    @property
    def padding(self) -> int:
        return self.kernel_size // 2

    @property
    def output_size(self) -> int:
        return (self.input_size + 2 * self.padding - self.kernel_size) // self.stride + 1

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 for one image."""
        return 2 * self.output_size**2 * self.kernel_size**2 * self.in_channels * self.out_channels


@dataclass(frozen=True)
class Dense:
    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True)
class Architecture(ABC):
    """The keys shared by every preset; the head is the same for all:
    [dense(dense_units) -> ReLU] -> dropout -> dense(1) -> sigmoid."""

    preset: ClassVar[str]
    image_size: int
    batch_norm: bool
    bn_momentum: float
    bn_epsilon: float
    dense_units: int
    dropout: float

    @abstractmethod
    def convs(self) -> list[Conv]:
        """Every convolution, in model order (the order the initial weights are drawn in)."""

    @abstractmethod
    def head_features(self) -> int:
        """Features entering the head."""

    @abstractmethod
    def describe(self) -> str:
        """The report's one-line description of the body (the shared head is described by `head_description`)."""

    def zero_gammas(self) -> set[str]:
        """Layers whose batch-norm gamma starts at zero instead of one."""
        return set()

    def denses(self) -> list[Dense]:
        features, layers = self.head_features(), []
        if self.dense_units:
            layers.append(Dense("dense", features, self.dense_units))
            features = self.dense_units
        layers.append(Dense("output", features, 1))
        return layers

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical name -> shape of every weight, in model order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for conv in self.convs():
            k = conv.kernel_size
            shapes[f"{conv.name}/kernel"] = (k, k, conv.in_channels, conv.out_channels)
            if self.batch_norm:
                shapes.update({f"{conv.name}/bn/{part}": (conv.out_channels,) for part in BN_PARTS})
            else:
                shapes[f"{conv.name}/bias"] = (conv.out_channels,)
        for dense in self.denses():
            shapes[f"{dense.name}/kernel"] = (dense.in_features, dense.out_features)
            shapes[f"{dense.name}/bias"] = (dense.out_features,)
        return shapes

    def parameter_count(self) -> int:
        """Trainable parameters (batch-norm moving statistics are not trained)."""
        return sum(int(np.prod(s)) for n, s in self.shapes().items() if "moving_" not in n)

    def flops_per_image(self) -> int:
        """Forward multiply-adds x 2 of the conv and dense layers (the bulk of the work)."""
        return sum(conv.flops for conv in self.convs()) + sum(2 * d.in_features * d.out_features for d in self.denses())

    def initial_weights(self, seed: int) -> dict[str, np.ndarray]:
        """He-normal conv kernels, Glorot-uniform dense kernels, zero biases, identity batch norm
        (gamma zero for the layers in `zero_gammas`; that draws nothing, so the other weights do not move)."""
        rng = np.random.default_rng([seed, 0x5EED])
        zero = {f"{layer}/bn/gamma" for layer in self.zero_gammas()}
        weights = {}
        for name, shape in self.shapes().items():
            if name.endswith("/kernel") and len(shape) == 4:
                fan_in = shape[0] * shape[1] * shape[2]
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
            elif name.endswith("/kernel"):
                limit = np.sqrt(6.0 / (shape[0] + shape[1]))
                value = rng.uniform(-limit, limit, size=shape)
            elif name.endswith(("gamma", "moving_variance")) and name not in zero:
                value = np.ones(shape)
            else:
                value = np.zeros(shape)
            weights[name] = value.astype(np.float32)
        return weights

    def normalisation(self) -> str:
        return f"batch norm (momentum {self.bn_momentum}, epsilon {self.bn_epsilon})" if self.batch_norm else "bias"

    def head_description(self) -> str:
        dense = f"dense {self.dense_units} → ReLU → " if self.dense_units else ""
        return f"{dense}dropout {self.dropout} → sigmoid output"

    def description(self) -> str:
        return (f"{self.describe()}; {self.head_description()}. {self.parameter_count():,} parameters, "
                f"{self.flops_per_image() / 1e6:,.1f} MFLOPs per image (forward).")

    def save(self, directory: Path) -> None:
        """Beside a saved model, for the frameworks whose native format holds weights but not the architecture."""
        (Path(directory) / SPEC_FILE).write_text(json.dumps({"preset": self.preset, **asdict(self)}, indent=1))
