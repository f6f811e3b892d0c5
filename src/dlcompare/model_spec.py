"""The one CNN every framework builds, and its canonical initial weights.

`ModelSpec` is read from params.yaml `model:` (plus the image size) and says
everything a framework needs to build the network:

    input (S, S, 3) floats in [0, 1]
    for each entry of `filters`: `convs_per_block` x [conv k x k 'same' -> batch norm -> ReLU], then 2x2 max pool
    head: global average pooling (or flatten) -> [dense(dense_units) -> ReLU] -> dropout -> dense(1) -> sigmoid

Initial weights are drawn once here, in NumPy, from the run's seed, in a
canonical layout (conv kernels as height, width, in, out; dense kernels as
in, out), so every framework starts from the very same numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class ModelSpec:
    image_size: int
    filters: tuple[int, ...]
    convs_per_block: int
    kernel_size: int
    batch_norm: bool
    bn_momentum: float
    bn_epsilon: float
    head: str
    dense_units: int
    dropout: float

    @classmethod
    def from_params(cls, params) -> "ModelSpec":
        m = params.model
        return cls(
            image_size=params.prepare.image_size,
            filters=tuple(m.filters),
            convs_per_block=m.convs_per_block,
            kernel_size=m.kernel_size,
            batch_norm=m.batch_norm,
            bn_momentum=m.bn_momentum,
            bn_epsilon=m.bn_epsilon,
            head=m.head,
            dense_units=m.dense_units,
            dropout=m.dropout,
        )

    def save(self, directory: Path) -> None:
        """Beside a saved model, for the frameworks whose native format holds weights but not the architecture."""
        (Path(directory) / SPEC_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, directory: Path) -> "ModelSpec":
        fields = json.loads((Path(directory) / SPEC_FILE).read_text())
        return cls(**{**fields, "filters": tuple(fields["filters"])})

    def convs(self) -> list[tuple[str, int, int, int, bool]]:
        """(name, in_channels, out_channels, input_size, pool_after) of every conv layer, in order."""
        layers, channels, size = [], 3, self.image_size
        for block, width in enumerate(self.filters):
            for repeat in range(self.convs_per_block):
                last = repeat == self.convs_per_block - 1
                layers.append((f"conv{block}_{repeat}", channels, width, size, last))
                channels = width
            size //= 2
        return layers

    @property
    def feature_size(self) -> int:
        """Spatial size after the last pooling."""
        return self.image_size // 2 ** len(self.filters)

    def denses(self) -> list[tuple[str, int, int]]:
        """(name, in_features, out_features) of the dense layers, output last."""
        features = self.filters[-1] * (self.feature_size**2 if self.head == "flatten" else 1)
        layers = []
        if self.dense_units:
            layers.append(("dense", features, self.dense_units))
            features = self.dense_units
        layers.append(("output", features, 1))
        return layers

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical name -> shape of every weight, in model order."""
        k = self.kernel_size
        shapes: dict[str, tuple[int, ...]] = {}
        for name, cin, cout, _, _ in self.convs():
            shapes[f"{name}/kernel"] = (k, k, cin, cout)
            if self.batch_norm:
                for part in ("gamma", "beta", "moving_mean", "moving_variance"):
                    shapes[f"{name}/bn/{part}"] = (cout,)
            else:
                shapes[f"{name}/bias"] = (cout,)
        for name, fin, fout in self.denses():
            shapes[f"{name}/kernel"] = (fin, fout)
            shapes[f"{name}/bias"] = (fout,)
        return shapes

    def parameter_count(self) -> int:
        """Trainable parameters (batch-norm moving statistics are not trained)."""
        return sum(int(np.prod(s)) for n, s in self.shapes().items() if "moving_" not in n)

    def flops_per_image(self) -> int:
        """Forward multiply-adds x 2 of the conv and dense layers (the bulk of the work)."""
        k = self.kernel_size
        conv = sum(2 * size * size * k * k * cin * cout for _, cin, cout, size, _ in self.convs())
        dense = sum(2 * fin * fout for _, fin, fout in self.denses())
        return conv + dense

    def initial_weights(self, seed: int) -> dict[str, np.ndarray]:
        """He-normal conv kernels, Glorot-uniform dense kernels, zero biases, identity batch norm."""
        rng = np.random.default_rng([seed, 0x5EED])
        weights = {}
        for name, shape in self.shapes().items():
            if name.endswith("/kernel") and len(shape) == 4:
                fan_in = shape[0] * shape[1] * shape[2]
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
            elif name.endswith("/kernel"):
                limit = np.sqrt(6.0 / (shape[0] + shape[1]))
                value = rng.uniform(-limit, limit, size=shape)
            elif name.endswith(("gamma", "moving_variance")):
                value = np.ones(shape)
            else:
                value = np.zeros(shape)
            weights[name] = value.astype(np.float32)
        return weights
