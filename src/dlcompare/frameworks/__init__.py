"""One module per framework, imported only when a stage needs it.

Each module defines `Implementation` (a `base.Framework`) and
`load_predictor(model_dir)`; nothing else in dlcompare imports a framework.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

MODULES = {"keras": "keras_fw", "tensorflow": "tensorflow_fw"}


def source_file(name: str) -> Path:
    """The file holding the whole implementation for `name` (its size is the coding effort)."""
    return Path(__file__).with_name(f"{MODULES[name]}.py")


def load(name: str) -> ModuleType:
    return importlib.import_module(f"dlcompare.frameworks.{MODULES[name]}")
