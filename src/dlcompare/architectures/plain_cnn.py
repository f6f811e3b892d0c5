"""The plain CNN (preset `plain_cnn`): blocks of convolutions, each block ending in 2x2 max pooling.

    input (S, S, 3) floats in [0, 1]
    for each entry of `filters`: `convs_per_block` x [conv k x k, stride 1 -> batch norm -> ReLU], then 2x2 max pool
    head: global average pooling (or flatten) -> the shared head
"""

from __future__ import annotations

from dataclasses import dataclass

from dlcompare.architectures.base import Architecture, Conv


@dataclass(frozen=True)
class PlainCNN(Architecture):
    preset = "plain_cnn"
    filters: tuple[int, ...]
    convs_per_block: int
    kernel_size: int
    head: str  # global_avg | flatten

    def blocks(self) -> list[list[Conv]]:
        """The convolutions of each block (named block<b>/conv<r>); a 2x2 max pool follows each block."""
        blocks, channels, size = [], 3, self.image_size
        for b, width in enumerate(self.filters):
            convs = [Conv(f"block{b}/conv{r}", channels if r == 0 else width, width, self.kernel_size, 1, size)
                     for r in range(self.convs_per_block)]
            blocks.append(convs)
            channels, size = width, size // 2
        return blocks

    def convs(self) -> list[Conv]:
        return [conv for block in self.blocks() for conv in block]

    @property
    def feature_size(self) -> int:
        """Spatial size after the last pooling (each pooling drops an odd last row and column)."""
        return self.image_size // 2 ** len(self.filters)

    def head_features(self) -> int:
        return self.filters[-1] * (self.feature_size**2 if self.head == "flatten" else 1)

    def describe(self) -> str:
        k = self.kernel_size
        return (f"plain CNN, {len(self.filters)} blocks of {self.convs_per_block}× [{k}×{k} conv → "
                f"{self.normalisation()} → ReLU] → 2×2 max pool, filters {list(self.filters)}; "
                f"{self.head.replace('_', ' ')} head")
