"""Load and validate params.yaml before any stage does work.

The sections mirror the pipeline stages. Every key is checked up front so a
typo or an impossible value fails in a second with one line naming the key,
instead of after an hour of training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dlcompare.errors import UserError
from dlcompare import frameworks
from dlcompare.frameworks import NAMES, PRECISIONS, REGISTRY
from dlcompare.architectures import PRESETS

DEFAULT_PARAMS = Path("params.yaml")
MICROSOFT_URL = (
    "https://download.microsoft.com/download/3/E/1/"
    "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)


class Section(BaseModel):
    # Unknown keys are errors: `train.epoch: 30` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataParams(Section):
    source: str = "download"
    url: str = Field(default=MICROSOFT_URL, pattern=r"^https?://[^/?#]+/")
    max_bytes: int = Field(default=2**30, ge=1)
    sha256: Optional[str] = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class PrepareParams(Section):
    classes: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")], Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]] = ("cat", "dog")
    image_size: int = Field(default=64, ge=8, le=1024)
    resize: Literal["squash", "center_crop"] = "squash"
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)
    max_per_class: Optional[int] = Field(default=None, ge=2)
    max_pixels: int = Field(default=50_000_000, ge=1)
    workers: int = Field(default=0, ge=0)


FRAMEWORKS = NAMES  # the registry (dlcompare/frameworks/__init__.py) is the one list


class PlainCNNParams(Section):
    filters: list[Annotated[int, Field(ge=1)]] = Field(default=[32, 64, 128, 256], min_length=1)
    convs_per_block: int = Field(default=1, ge=1)
    kernel_size: int = Field(default=3, ge=1)
    head: Literal["global_avg", "flatten"] = "global_avg"


class ResNetParams(Section):
    stem_width: int = Field(default=32, ge=1)
    stem_stride: Literal[1, 2] = 2
    widths: list[Annotated[int, Field(ge=1)]] = Field(default=[32, 64, 128], min_length=1)
    blocks_per_stage: int = Field(default=2, ge=1)
    zero_init_residual: bool = True


class ModelParams(Section):
    preset: Literal[tuple(PRESETS)] = "plain_cnn"
    batch_norm: bool = True
    bn_momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    bn_epsilon: float = Field(default=1e-3, gt=0.0)
    dense_units: int = Field(default=0, ge=0)
    dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    plain_cnn: PlainCNNParams = PlainCNNParams()
    resnet: ResNetParams = ResNetParams()


class AugmentParams(Section):
    flip: bool = True
    shift: float = Field(default=0.125, ge=0.0, lt=0.5)


class TrainParams(Section):
    frameworks: list[Literal[FRAMEWORKS]] = Field(default=list(FRAMEWORKS), min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default=[0], min_length=1)
    epochs: int = Field(default=16, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=1e-2, gt=0.0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    min_learning_rate: float = Field(default=0.0, ge=0.0)
    warmup_fraction: float = Field(default=0.125, ge=0.0, lt=1.0)
    adam_beta_1: float = Field(default=0.9, ge=0.0, lt=1.0)
    adam_beta_2: float = Field(default=0.999, ge=0.0, lt=1.0)
    adam_epsilon: float = Field(default=1e-7, gt=0.0)
    augment: AugmentParams = AugmentParams()
    threads: int = Field(default=0, ge=0)
    precision: Literal[PRECISIONS] = "float32"

    @property
    def warmup_epochs(self) -> int:
        """The whole epochs of warm-up: warmup_fraction of the run, rounded down, so a short run keeps its
        schedule (`dvc exp run -S train.epochs=2` warms up for none) and never warms up for all of it."""
        return math.floor(self.warmup_fraction * self.epochs + 1e-9)


class EvaluateParams(Section):
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    batch_size: int = Field(default=256, ge=1)
    latency_runs: int = Field(default=50, ge=5)
    bootstrap_samples: int = Field(default=2000, ge=100)
    bootstrap_seed: int = Field(default=0, ge=0)


class SpeedParams(Section):
    rounds: int = Field(default=6, ge=2)
    train_images: int = Field(default=1024, ge=1)
    timed_epochs: int = Field(default=2, ge=1)
    inference_images: int = Field(default=512, ge=1)
    latency_calls: int = Field(default=30, ge=5)


class ToleranceParams(Section):
    accuracy_points: float = Field(default=1.0, ge=0.0, le=100.0)
    speed_ratio: float = Field(default=0.95, gt=0.0, le=1.0)


class ReviewParams(Section):
    tolerance: ToleranceParams = ToleranceParams()
    rounds: int = Field(default=6, ge=5)


class Params(Section):
    data: DataParams = DataParams()
    prepare: PrepareParams = PrepareParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    speed: SpeedParams = SpeedParams()
    review: ReviewParams = ReviewParams()


def _check_across_sections(params: Params, path: Path) -> None:
    """Rules that involve more than one key."""
    model = params.model
    halvings = (len(model.plain_cnn.filters) if model.preset == "plain_cnn"
                else len(model.resnet.widths) - 1 + (model.resnet.stem_stride == 2))
    if params.prepare.image_size < 2**halvings:
        key = "model.plain_cnn.filters" if model.preset == "plain_cnn" else "model.resnet.widths"
        raise UserError(f"{path}: prepare.image_size = {params.prepare.image_size} is too small for {halvings} halvings"
                        f" ({key}); use at least {2**halvings} or fewer entries")
    if model.plain_cnn.kernel_size % 2 == 0:
        raise UserError(f"{path}: model.plain_cnn.kernel_size = {model.plain_cnn.kernel_size} must be odd "
                        "(padded kernel_size // 2 on every side, the size stays)")
    for name in params.train.frameworks:
        if model.preset not in REGISTRY[name].presets:
            raise UserError(f"{path}: {name} does not implement model.preset = {model.preset} (it implements "
                            f"{', '.join(REGISTRY[name].presets)}); remove {name} from train.frameworks or change the preset")
    if params.prepare.classes[0] == params.prepare.classes[1]:
        raise UserError(f"{path}: prepare.classes names {params.prepare.classes[0]!r} twice; give two different classes")
    for key in ("frameworks", "seeds"):
        values = getattr(params.train, key)
        if len(set(values)) != len(values):
            raise UserError(f"{path}: train.{key} = {values} lists a value twice; list each once")
    if params.train.min_learning_rate > params.train.learning_rate:
        raise UserError(f"{path}: train.min_learning_rate must not exceed train.learning_rate")
    # Checked here, so the first stage `dvc repro` runs stops before hours of work that would end at train@.
    for name in params.train.frameworks:
        missing = frameworks.missing_packages(name)
        if missing:
            raise UserError(f"{path}: train.frameworks lists {name}, but {frameworks.not_installed(missing)};"
                            f" install with {frameworks.install_hint(name)} or remove {name}")


def _one_line(error: ValidationError, path: Path) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    shown = first.get("input")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key '{key}'; remove it or fix its spelling{more}"
    return f"{path}: {key} = {shown!r} is invalid: {first['msg'].lower()}{more}"


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a params file that says `epochs` twice is a mistake."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"key '{key}' appears twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path: Path = DEFAULT_PARAMS, frameworks: list[str] | None = None) -> Params:
    """Read and validate params.yaml; raise UserError naming the bad key.

    `frameworks` replaces train.frameworks (the benchmark measures the ones it is given, on a machine that may
    lack the others).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found; run from the project root or pass --params")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except _DuplicateKey as exc:
        raise UserError(f"{path}: {exc}; keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections (data, prepare, ...)")
    if frameworks is not None:
        raw["train"] = {**(raw.get("train") or {}), "frameworks": list(frameworks)}
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_one_line(exc, path)) from None
    _check_across_sections(params, path)
    return params
