"""Load and validate params.yaml before any stage does work.

The sections mirror the pipeline stages. Every key is checked up front so a
typo or an impossible value fails in a second with one line naming the key,
instead of after an hour of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dlcompare.errors import UserError

DEFAULT_PARAMS = Path("params.yaml")
MICROSOFT_URL = (
    "https://download.microsoft.com/download/3/E/1/"
    "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)


class Section(BaseModel):
    # Unknown keys are errors: `train.epoch: 30` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: str = "download"
    url: str = MICROSOFT_URL
    sha256: Optional[str] = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class PrepareParams(Section):
    image_size: int = Field(default=128, ge=16, le=1024)
    resize: Literal["squash", "center_crop"] = "squash"
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)
    max_per_class: Optional[int] = Field(default=None, ge=2)
    max_pixels: int = Field(default=50_000_000, ge=1)
    workers: int = Field(default=0, ge=0)


class Params(Section):
    data: DataParams = DataParams()
    prepare: PrepareParams = PrepareParams()


def _one_line(error: ValidationError, path: Path) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    shown = first.get("input")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key '{key}'; remove it or fix its spelling{more}"
    return f"{path}: {key} = {shown!r} is invalid: {first['msg'].lower()}{more}"


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml; raise UserError naming the bad key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections (data, prepare, ...)")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_one_line(exc, path)) from None
