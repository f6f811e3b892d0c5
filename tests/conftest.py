"""Shared test helpers: the real datasets in ../shared, small zip builders, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; DLCOMPARE_DATASETS where it cannot be (a GPU machine: benchmarks/gpu_check.sh).
DATASETS = Path(os.environ.get("DLCOMPARE_DATASETS", ROOT.parent / "shared" / "datasets"))
KAGGLE_10K = DATASETS / "dogs-vs-cats-train-10k.zip"
PETIMAGES_MINI = DATASETS / "petimages-mini.zip"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def _shared_datasets_present():
    if not (KAGGLE_10K.is_file() and PETIMAGES_MINI.is_file()):
        pytest.exit(f"the shared datasets are missing: expected them in {DATASETS} (../shared beside the checkout)", 2)


def env_with_venv() -> dict:
    """Environment in which `dlcompare` and `dvc` resolve to this interpreter's venv."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_cli(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "dlcompare"), *args], cwd=cwd, env=env_with_venv(), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dlcompare {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_params(directory: Path, text: str) -> Path:
    path = directory / "params.yaml"
    path.write_text(text)
    return path


def copy_members(source_zip: Path, target_zip: Path, keep) -> int:
    """Write a zip holding the members of `source_zip` for which keep(name) is true."""
    count = 0
    with zipfile.ZipFile(source_zip) as src, zipfile.ZipFile(target_zip, "w") as dst:
        for info in src.infolist():
            if not info.is_dir() and keep(info.filename):
                dst.writestr(info, src.read(info))
                count += 1
    return count


def small_kaggle_zip(path: Path, per_class: int) -> Path:
    """A real Kaggle-layout subset: cat.0..N-1 and dog.0..N-1 from the 10k zip."""
    wanted = {f"train/{c}.{i}.jpg" for c in ("cat", "dog") for i in range(per_class)}
    copy_members(KAGGLE_10K, path, lambda name: name in wanted)
    return path


def run_tool(args: list[str], cwd: Path, bin_dir: Path = BIN, check: bool = True,
             extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run dvc/git in a test repo with a git identity (CI has none; dvc exp commits), from the venv in `bin_dir`."""
    env = dict(os.environ, **(extra_env or {}))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="dlcompare tests", GIT_AUTHOR_EMAIL="tests@dlcompare.invalid",
        GIT_COMMITTER_NAME="dlcompare tests", GIT_COMMITTER_EMAIL="tests@dlcompare.invalid",
        DVC_NO_ANALYTICS="1",
    )
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def project_params(overrides: dict) -> str:
    """The project's params.yaml with `overrides` merged in (nested dicts merge key by key)."""
    import yaml

    return yaml.safe_dump(merge_dicts(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides), sort_keys=False)


# The speed stage at the smallest design that still gives intervals (two rounds): tests check its wiring, not speed.
TINY_SPEED = {"rounds": 2, "train_images": 32, "timed_epochs": 1, "inference_images": 32, "latency_calls": 5}


def make_dvc_project(directory: Path, overrides: dict, bin_dir: Path = BIN) -> Path:
    """A fresh git + DVC repo holding this project's pipeline, plot templates and code, with params overridden
    (the speed stage at TINY_SPEED unless the overrides say otherwise)."""
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "versions.yaml", "frameworks.lock"):
        shutil.copy(ROOT / name, directory / name)
    shutil.copytree(ROOT / "src", directory / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (directory / "params.yaml").write_text(project_params(merge_dicts({"speed": TINY_SPEED}, overrides)))
    run_tool(["git", "init", "-q"], directory, bin_dir)
    run_tool(["dvc", "init", "-q"], directory, bin_dir)
    shutil.copytree(ROOT / ".dvc" / "plots", directory / ".dvc" / "plots")
    shutil.copy(ROOT / ".dvc" / "config", directory / ".dvc" / "config")
    run_tool(["git", "add", "-A"], directory, bin_dir)
    run_tool(["git", "commit", "-qm", "test project"], directory, bin_dir)
    return directory


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """Real photos, prepared small: 100 per class from the 10k zip at 32 px."""
    from dlcompare.params import PrepareParams
    from dlcompare.prepare import prepare

    base = tmp_path_factory.mktemp("tiny")
    source = small_kaggle_zip(base / "small.zip", per_class=100)
    prepare(source, base / "prepared", base / "data.json", PrepareParams(image_size=32))
    return base / "prepared"


TINY_TRAINING = {
    "prepare": {"image_size": 32},
    "model": {"plain_cnn": {"filters": [8, 16]}},
    "train": {"epochs": 2, "batch_size": 16},
    "evaluate": {"latency_runs": 5},
    "speed": TINY_SPEED,
}


def tiny_project(directory: Path, prepared: Path, overrides: dict | None = None) -> Path:
    """A working folder with the prepared tiny data and params for a fast training run."""
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(prepared, directory / "data" / "prepared")
    params = TINY_TRAINING if overrides is None else merge_dicts(TINY_TRAINING, overrides)
    (directory / "params.yaml").write_text(project_params(params))
    return directory


def merge_dicts(base: dict, extra: dict) -> dict:
    import copy

    merged = copy.deepcopy(base)
    for key, value in extra.items():
        merged[key] = merge_dicts(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged
