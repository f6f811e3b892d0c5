"""The residual network (preset `resnet`), CIFAR-style as in He et al. 2016, section 4.2.

    input (S, S, 3) floats in [0, 1]
    stem: conv 3x3 (stem_width, stride stem_stride) -> batch norm -> ReLU
    for each entry of `widths` (a stage): `blocks_per_stage` basic blocks
        basic block: conv 3x3 -> batch norm -> ReLU -> conv 3x3 -> batch norm, + shortcut, then ReLU
        the first block of every stage after the first strides by 2; where the shape changes the shortcut is a
        1x1 convolution (with that stride) -> batch norm, otherwise the identity
    head: global average pooling -> the shared head

A stem stride of 2 runs the stages at half the image size (64 px photos at
CIFAR's 32), where the same FLOPs buy four times the width.
`zero_init_residual` starts each block's last batch-norm gamma at zero, so
every block starts as the identity (Goyal et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

from dlcompare.architectures.base import Architecture, Conv


@dataclass(frozen=True)
class ResidualBlock:
    name: str  # stage<s>/block<b>
    conv0: Conv
    conv1: Conv
    shortcut: Conv | None  # None: the identity


@dataclass(frozen=True)
class ResNet(Architecture):
    preset = "resnet"
    stem_width: int
    stem_stride: int
    widths: tuple[int, ...]
    blocks_per_stage: int
    zero_init_residual: bool

    def stem(self) -> Conv:
        return Conv("stem", 3, self.stem_width, 3, self.stem_stride, self.image_size)

    def residual_blocks(self) -> list[ResidualBlock]:
        blocks, channels, size = [], self.stem_width, self.stem().output_size
        for s, width in enumerate(self.widths):
            for b in range(self.blocks_per_stage):
                name, stride = f"stage{s}/block{b}", 2 if s > 0 and b == 0 else 1
                conv0 = Conv(f"{name}/conv0", channels, width, 3, stride, size)
                conv1 = Conv(f"{name}/conv1", width, width, 3, 1, conv0.output_size)
                projection = stride != 1 or channels != width
                shortcut = Conv(f"{name}/shortcut", channels, width, 1, stride, size) if projection else None
                blocks.append(ResidualBlock(name, conv0, conv1, shortcut))
                channels, size = width, conv0.output_size
        return blocks

    def convs(self) -> list[Conv]:
        convs = [self.stem()]
        for block in self.residual_blocks():
            convs += [block.conv0, block.conv1] + ([block.shortcut] if block.shortcut else [])
        return convs

    def head_features(self) -> int:
        return self.widths[-1]

    def zero_gammas(self) -> set[str]:
        if not (self.zero_init_residual and self.batch_norm):
            return set()
        return {block.conv1.name for block in self.residual_blocks()}

    def describe(self) -> str:
        depth = 2 * len(self.widths) * self.blocks_per_stage + 2  # weighted layers on the longest path, as He et al. count
        return (f"ResNet-{depth} (CIFAR-style): 3×3 stem ({self.stem_width}, stride {self.stem_stride}) → {len(self.widths)} stages of "
                f"{self.blocks_per_stage} basic blocks [3×3 conv → {self.normalisation()} → ReLU → 3×3 conv → "
                f"{self.normalisation().split(' (')[0]}, + shortcut → ReLU], widths {list(self.widths)}, the first block "
                f"of each later stage striding 2 with a 1×1 projection shortcut"
                f"{', last gamma of each block zero at start' if self.zero_gammas() else ''}; global average pooling")
