"""The architectures every framework builds: one framework-neutral description per preset.

`from_params` reads params.yaml `model:` (the shared keys, plus the chosen
preset's sub-section); `load` reads the description saved beside a model.
Adding a preset: its module here (an `Architecture` subclass), its entry in
`PRESETS`, its params sub-section, and its builder in each framework file
that implements it (the registry lists which do).
"""

from __future__ import annotations

import json
from pathlib import Path

from dlcompare.architectures.base import SPEC_FILE, Architecture, Conv, Dense
from dlcompare.architectures.plain_cnn import PlainCNN
from dlcompare.architectures.resnet import ResidualBlock, ResNet

PRESETS: dict[str, type[Architecture]] = {"plain_cnn": PlainCNN, "resnet": ResNet}
SHARED_KEYS = ("batch_norm", "bn_momentum", "bn_epsilon", "dense_units", "dropout")

__all__ = ["PRESETS", "Architecture", "Conv", "Dense", "PlainCNN", "ResNet", "ResidualBlock", "from_params", "load"]


def _tuples(fields: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()}


def from_params(params) -> Architecture:
    """The architecture params.yaml describes, at the prepared image size."""
    m = params.model
    own = getattr(m, m.preset).model_dump()
    shared = {key: getattr(m, key) for key in SHARED_KEYS}
    return PRESETS[m.preset](image_size=params.prepare.image_size, **shared, **_tuples(own))


def load(directory: Path) -> Architecture:
    fields = json.loads((Path(directory) / SPEC_FILE).read_text())
    return PRESETS[fields.pop("preset")](**_tuples(fields))
