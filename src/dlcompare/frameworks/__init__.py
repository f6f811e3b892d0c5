"""The framework registry: the one place that says which frameworks exist.

Params validation, the CLI help, train/evaluate/predict, the report, the
benchmark and the tests all read `REGISTRY`; adding a framework means adding
its file and one entry here (then `python -m dlcompare.frameworks` to refresh
the DVC dependency links, see `sync_dependency_links`).

Importing this package imports no framework: `load()` does, after the
entry's runtime has set the environment the framework reads at import time
(thread pools, log levels, `KERAS_BACKEND`).
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

HERE = Path(__file__).parent
PROJECT_ROOT = HERE.parents[2]
LOCK_FILE = PROJECT_ROOT / "frameworks.lock"
DEPENDENCY_LINKS = HERE / "deps"
VERSIONS_FILE = PROJECT_ROOT / "versions.yaml"


class Tutorial(NamedTuple):
    """The tutorial a user of a framework would start from; `make bench` times the framework's loop against it."""
    pipeline: str  # "keras-io" (image_dataset_from_directory + fit) or "torch-loader" (Dataset + DataLoader, own step)
    name: str  # its name in bench's results: frameworks that would start from the same run share it
    runs_as: str  # the registered framework it runs as


@dataclass(frozen=True)
class RegistryEntry:
    """What the registry says of one framework; the implementation is its file's `Implementation` (base.Framework)."""
    name: str
    module: str  # the implementation file (frameworks/<module>.py); its size is the coding effort
    runtime: str  # engine whose runtime settings apply: runtime_<engine>.py
    packages: tuple[str, ...]  # distributions whose versions decide the run's numbers (pinned in frameworks.lock)
    extras: tuple[str, ...]  # the pip extras of pyproject.toml that install those packages
    presets: tuple[str, ...]  # the architectures (dlcompare/architectures) its file builds; params refuse any other
    tutorial: Tutorial
    keras_backend: str | None = None
    # For the report's "what could not be made equal"; each names this framework's own side.
    notes: tuple[str, ...] = ()


KERAS_NOTE = ("Keras' BinaryCrossentropy on the sigmoid output: on TensorFlow it recovers the logits, on JAX and "
              "PyTorch it clips probabilities to [1e-7, 1 − 1e-7]; the hand-written files use the logits directly.")

PLAIN_AND_RESNET = ("plain_cnn", "resnet")
# keras-io's "Image classification from scratch", on TensorFlow: where a Keras or a TensorFlow user would start.
# (JAX's own documentation trains with PyTorch data loading, hence jax's "torch-loader".)
KERAS_IO = Tutorial("keras-io", "keras-io", "keras")

REGISTRY: dict[str, RegistryEntry] = {f.name: f for f in (
    RegistryEntry("keras", "keras_fw", "tensorflow", ("keras", "tensorflow"), ("tensorflow",), PLAIN_AND_RESNET, KERAS_IO, keras_backend="tensorflow", notes=(
        "keras: dropout masks from Keras' SeedGenerator; `fit` fed through tf.data (AUTOTUNE off, two batches prefetched).",
        KERAS_NOTE)),
    RegistryEntry("tensorflow", "tensorflow_fw", "tensorflow", ("tensorflow",), ("tensorflow",), PLAIN_AND_RESNET, KERAS_IO, notes=(
        "tensorflow: dropout masks from `tf.nn.experimental.stateless_dropout`; batches from dlcompare's worker process, as pytorch and jax.",)),
    RegistryEntry("pytorch", "pytorch_fw", "torch", ("torch",), ("torch",), PLAIN_AND_RESNET,
              Tutorial("torch-loader", "pytorch", "pytorch"), notes=(
        "pytorch: dropout masks from torch's global generator (reseeded per epoch); NCHW tensors in channels_last "
        "memory; batch-norm moving variance updated with the biased batch variance, as the others do, not torch's unbiased one.",)),
    RegistryEntry("jax", "jax_fw", "jax", ("jax", "jaxlib", "optax"), ("jax",), PLAIN_AND_RESNET,
              Tutorial("torch-loader", "jax", "jax"), notes=(
        "jax: dropout masks from `jax.random` keys folded with the step; XLA fuses and reorders the float32 arithmetic, "
        "and on a multi-core CPU it is not bitwise run-to-run deterministic (jax-ml/jax#39741).",)),
    RegistryEntry("keras-jax", "keras_fw", "jax", ("keras", "jax", "jaxlib"), ("keras", "jax"), PLAIN_AND_RESNET,
              Tutorial("keras-io", "keras-io-jax", "keras-jax"), keras_backend="jax", notes=(
        "keras-jax: Keras' JAX trainer jit-compiles the step; fed by a PyDataset; not bitwise deterministic on a multi-core CPU.",
        KERAS_NOTE)),
    RegistryEntry("keras-torch", "keras_fw", "torch", ("keras", "torch"), ("keras", "torch"), PLAIN_AND_RESNET,
              Tutorial("keras-io", "keras-io-torch", "keras-torch"), keras_backend="torch", notes=(
        "keras-torch: Keras' PyTorch trainer runs eagerly (no torch.compile); fed by a PyDataset.", KERAS_NOTE)),
)}

NAMES = tuple(REGISTRY)

# What tests/test_equivalence.py holds every framework to against the reference (weights and outputs), and what
# the report states: after three optimiser steps, and after a three-epoch fit (float32 rounding grows with steps).
STEP_TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
FIT_TOLERANCE = {"atol": 6e-3, "rtol": 1e-3}
ENGINES = tuple(dict.fromkeys(entry.runtime for entry in REGISTRY.values()))  # runtime_<engine>.py for each
# train.precision: what float32 convolutions and matrix products compute in on an NVIDIA GPU, set alike in every
# engine by its runtime's set_precision (docs/fairness.md). "float32": IEEE float32 (TF32 off); "tf32": TensorFloat-32
# tensor cores (10-bit mantissa inputs, float32 accumulation). The CPU kernels compute IEEE float32 under both.
PRECISIONS = ("float32", "tf32")


def native_framework(engine: str) -> str:
    """The framework that uses `engine` directly, not through Keras: benchmarks/layers.py times its steps."""
    return next(name for name, entry in REGISTRY.items() if entry.runtime == engine and not entry.keras_backend)


def source_file(name: str) -> Path:
    """The file holding the whole implementation for `name` (its size is the coding effort)."""
    return HERE / f"{REGISTRY[name].module}.py"


def runtime_file(name: str) -> Path:
    return HERE / f"runtime_{REGISTRY[name].runtime}.py"


def runtime(engine: str) -> ModuleType:
    return importlib.import_module(f"dlcompare.frameworks.runtime_{engine}")


def load(name: str, threads: int = 0, precision: str = "float32") -> ModuleType:
    """Import `name`'s implementation in a process that has not imported a conflicting Keras backend, its engine set
    to `precision` (PRECISIONS)."""
    from dlcompare.errors import UserError

    if name not in REGISTRY:
        raise UserError(f"--framework {name!r} is not one of {', '.join(NAMES)}")
    missing = missing_packages(name)
    if missing:
        raise UserError(f"--framework {name}: {not_installed(missing)}; install with {install_hint(name)}")
    entry = REGISTRY[name]
    runtime(entry.runtime).before_import(threads)
    if entry.keras_backend:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != entry.keras_backend:
            raise RuntimeError(f"{name} needs Keras on {entry.keras_backend}, but this process already imported "
                               f"Keras on {sys.modules['keras'].backend.backend()}; run it in its own process")
        os.environ["KERAS_BACKEND"] = entry.keras_backend
    # Keras (TensorFlow's too) imports JAX whenever it is installed (its Orbax checkpoint callback, 0.14 GB of
    # memory); a user of TensorFlow or PyTorch who installed only that engine never loads it, nor does the comparison.
    unused_engines = ("jax",) if entry.runtime != "jax" else ()
    with native_stderr_hidden(), imports_hidden(unused_engines):
        module = importlib.import_module(f"dlcompare.frameworks.{entry.module}")
    runtime(entry.runtime).set_precision(precision)
    return module


@contextmanager
def imports_hidden(packages: tuple[str, ...]):
    """Make `import <package>` fail for the not-yet-imported `packages` (optional imports take their fallback)."""
    hidden = [package for package in packages if package not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))
    try:
        yield
    finally:
        for package in hidden:
            del sys.modules[package]


@contextmanager
def native_stderr_hidden():
    """Hide what native code writes to the process's stderr while a framework loads (or Keras saves).

    TensorFlow's C++ start-up lines (oneDNN notice, CUDA stub, absl preamble)
    are written before any log setting applies, twice per process. Python
    exceptions are unaffected: they are raised and printed after this block.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def pinned_versions() -> dict[str, str]:
    """package -> version from frameworks.lock (pip `name==version` lines)."""
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, version = line.split("==")
            pins[package.strip().lower()] = version.strip()
    return pins


def package_versions(packages) -> dict[str, str | None]:
    """Each package's installed version, None where it is not installed (the one lookup bench and ab use too)."""
    from importlib import metadata

    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def installed_versions(name: str) -> dict[str, str]:
    return {package: version or "missing" for package, version in package_versions(REGISTRY[name].packages).items()}


def missing_packages(name: str) -> list[str]:
    return [package for package, version in installed_versions(name).items() if version == "missing"]


def not_installed(packages: list[str]) -> str:
    return f"{packages[0]} is not installed" if len(packages) == 1 else f"{', '.join(packages)} are not installed"


def install_hint(name: str) -> str:
    """How to install what `name` needs, for the one-line error when it is missing."""
    extras = ",".join(REGISTRY[name].extras)
    return f"pip install -e '.[{extras}]' (or '.[all]' for every framework)"


# The framework-neutral code every run trains with (paths in the dlcompare package). One list for two uses:
# train@<name> depends on it through deps/<name>/, and a checkpoint resumes only if it is unchanged (train.py).
TRAINING_CODE = ("train.py", "batches.py", "architectures", "frameworks/base.py")


def training_code() -> list[Path]:
    package = HERE.parent
    return [file for name in TRAINING_CODE for file in sorted((package / name).glob("*.py")) or [package / name]]


def dependency_files(name: str) -> dict[str, bytes | Path]:
    """What a train@<name> run depends on: the shared training code, its own files (as links), its pinned versions.

    Shared files are linked as their path in the package with "--" for "/" (architectures--resnet.py).
    """
    pins = pinned_versions()
    lines = [f"{package}=={pins[package]}" for package in REGISTRY[name].packages]
    shared = {str(path.relative_to(HERE.parent)).replace("/", "--"): path for path in training_code()}
    return {
        **shared,
        source_file(name).name: source_file(name),
        runtime_file(name).name: runtime_file(name),
        "versions.txt": ("\n".join(lines) + "\n").encode(),
    }


def versions_yaml() -> bytes:
    """versions.yaml: the pinned version of every package a registered framework uses, one line each."""
    pins = pinned_versions()
    packages = dict.fromkeys(package for name in NAMES for package in REGISTRY[name].packages)
    lines = ["# Written by `make install` (python -m dlcompare.frameworks) from frameworks.lock: the framework versions",
             "# of this revision. The compare stage declares them as params, so `dvc exp show` and `dlcompare diff`",
             "# say which versions two experiments ran."]
    return ("\n".join(lines + [f"{package}: '{pins[package]}'" for package in packages]) + "\n").encode()


def sync_dependency_links(check: bool = False) -> list[str]:
    """Write deps/<name>/ for every registered framework and versions.yaml; with check, only list what is out of date.

    dvc.yaml cannot look a name up in a table, so each train@<name> stage
    depends on the folder deps/<name>/: links to the files that implement the
    framework and a copy of its lines of frameworks.lock. Editing keras_fw.py
    re-runs the three Keras runs, upgrading torch re-runs pytorch and
    keras-torch, and nothing else.
    """
    stale = []
    wanted_names = set(NAMES)
    for existing in sorted(DEPENDENCY_LINKS.glob("*")) if DEPENDENCY_LINKS.exists() else []:
        if existing.name not in wanted_names:
            stale.append(str(existing))
            if not check:
                import shutil

                shutil.rmtree(existing)
    for name in NAMES:
        folder = DEPENDENCY_LINKS / name
        wanted = dependency_files(name)
        present = {path.name for path in folder.iterdir()} if folder.exists() else set()
        for extra in present - set(wanted):
            stale.append(str(folder / extra))
            if not check:
                (folder / extra).unlink()
        for file_name, target in wanted.items():
            path = folder / file_name
            if isinstance(target, Path):
                link = os.path.relpath(target, folder)
                ok = path.is_symlink() and os.readlink(path) == link
            else:
                ok = path.is_file() and not path.is_symlink() and path.read_bytes() == target
            if ok:
                continue
            stale.append(str(path))
            if check:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
            if isinstance(target, Path):
                path.symlink_to(link)
            else:
                path.write_bytes(target)
    versions = versions_yaml()
    if not VERSIONS_FILE.is_file() or VERSIONS_FILE.read_bytes() != versions:
        stale.append(str(VERSIONS_FILE))
        if not check:
            VERSIONS_FILE.write_bytes(versions)
    return stale
