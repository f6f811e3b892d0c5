"""The registry is the one place a framework is declared: its packages are pinned and installable, and the
machine helpers every runtime uses work off Linux too."""

import os
import tomllib

from packaging.requirements import Requirement

from conftest import ROOT
from dlcompare import machine
from dlcompare.frameworks import REGISTRY, pinned_versions


def test_every_registered_framework_is_pinned_and_installed_by_its_extras():
    pins = pinned_versions()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, entry in REGISTRY.items():
        assert entry.extras, name
        covered = {Requirement(line).name.lower() for extra in entry.extras for line in extras[extra]}
        for package in entry.packages:
            assert package in pins, f"{name}: {package} is not pinned in frameworks.lock"
            assert package in covered, f"{name}: no extra of {entry.extras} installs {package}"


def test_cores_and_cpu_fall_back_where_linux_interfaces_are_missing(monkeypatch, tmp_path):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert machine.available_cores() == (os.cpu_count() or 1)
    monkeypatch.setattr(machine, "Path", lambda _: tmp_path / "no-cpuinfo")
    described = machine.machine()
    assert described["cpu"] and described["cpu"] != "" and described["cores"] == (os.cpu_count() or 1)
    assert len(described["host"]) == 12


DUMMY_FILE = '''"""A framework added by a test on an existing engine: PyTorch's implementation under a new name."""
HARNESS_ADAPTERS = ()
# ---- model: pytorch_fw's
# ---- training: pytorch_fw's
from dlcompare.frameworks.pytorch_fw import Implementation, load_predictor  # noqa: E402,F401
'''
DUMMY_ENTRY = '    RegistryEntry("dummy", "dummy_fw", "torch", ("torch",), ("torch",), ("plain_cnn",), Tutorial("torch-loader", "dummy", "dummy")),\n'

# What each part of the harness derives from the registry, read in the copy that has the dummy framework.
DERIVED = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import bench, layers
from dlcompare import effort, report
from dlcompare.frameworks import ENGINES, REGISTRY, native_framework, source_file
from dlcompare.params import load_params
print(json.dumps({
    "bench_frameworks": list(bench.FRAMEWORKS), "bench_tutorial": REGISTRY["dummy"].tutorial.name,
    "layers_engine_runs": native_framework("torch"), "engines": list(ENGINES),
    "params_frameworks": load_params("params.yaml").train.frameworks,
    "same_engine": report._same_engine("pytorch", "dummy", {"per_seed": {"0": {"b": 0, "c": 0}}}, 2),
    "effort": effort.coding_effort(source_file("dummy")),
}))
'''


def test_a_framework_on_an_existing_engine_is_its_file_and_its_registry_entry(tmp_path, tiny_prepared):
    """Everything else (CLI, params, DVC dependency links, train/evaluate, report, bench, layers) derives it."""
    import json
    import shutil
    import subprocess
    import sys

    from conftest import BIN, env_with_venv, tiny_project

    project = tiny_project(tmp_path / "project", tiny_prepared, {"train": {"frameworks": ["pytorch", "dummy"]}})
    for name in ("frameworks.lock", "versions.yaml"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "deps"))
    frameworks = project / "src" / "dlcompare" / "frameworks"
    (frameworks / "dummy_fw.py").write_text(DUMMY_FILE)
    registry = (frameworks / "__init__.py").read_text()
    (frameworks / "__init__.py").write_text(registry.replace(")}\n\nNAMES", DUMMY_ENTRY + ")}\n\nNAMES", 1))
    env = dict(env_with_venv(), PYTHONPATH=str(project / "src"))

    def run(*args):
        result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    run(sys.executable, "-m", "dlcompare.frameworks")  # what `make install` runs
    assert (frameworks / "deps" / "dummy" / "dummy_fw.py").resolve() == (frameworks / "dummy_fw.py").resolve()
    assert (project / "versions.yaml").read_text() == (ROOT / "versions.yaml").read_text()  # torch: pinned already
    assert "dummy" in run(str(BIN / "dlcompare"), "train", "--help")
    metrics = {}
    for name in ("pytorch", "dummy"):
        run(str(BIN / "dlcompare"), "train", "-f", name, "-s", "0")
        run(str(BIN / "dlcompare"), "evaluate", "-f", name, "-s", "0")
        metrics[name] = json.loads((project / "metrics" / "eval" / f"{name}-0.json").read_text())
    assert metrics["dummy"]["accuracy"] == metrics["pytorch"]["accuracy"]  # the same implementation, seed for seed

    derived = json.loads(run(sys.executable, "-c", DERIVED, str(ROOT / "benchmarks")))
    assert "dummy" in derived["bench_frameworks"] and derived["bench_tutorial"] == "dummy"
    assert derived["engines"] == ["tensorflow", "torch", "jax"] and derived["layers_engine_runs"] == "pytorch"
    assert derived["params_frameworks"] == ["pytorch", "dummy"]
    assert "both run on PyTorch's kernels" in derived["same_engine"]
    assert derived["effort"] == {"model": 0, "training_loop": 1, "adapters": 1}  # the import; HARNESS_ADAPTERS


def test_the_report_states_the_equivalence_tolerances_the_tests_hold(monkeypatch):
    from dlcompare import report

    assert "within 1e-4 of low-level TensorFlow" in report.not_equal([])[0]
    monkeypatch.setattr(report, "STEP_TOLERANCE", {"atol": 2e-5, "rtol": 0.0})
    assert "within 2e-5 of low-level TensorFlow" in report.not_equal([])[0]
