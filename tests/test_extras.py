"""A second virtual environment with only the core and the PyTorch extra: no TensorFlow, no JAX, no Keras.

The pipeline must run to the end there with train.frameworks: [pytorch], the benchmark must measure
pytorch although params.yaml lists all six (as on a GPU machine without TensorFlow), the equivalence
tests must run against PyTorch as their reference, and selecting a framework whose packages are missing
must be one line naming the extra, before any stage does work.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import PETIMAGES_MINI, ROOT, TINY_TRAINING, make_dvc_project, merge_dicts, run_tool

# pytest-xdist runs this module on one worker, so its torch-only virtual environment is built once.
pytestmark = pytest.mark.xdist_group("extras")


@pytest.fixture(scope="module")
def torch_only_venv(tmp_path_factory):
    """A copy of the project installed as `pip install -e '.[torch]'` with the pinned versions."""
    base = tmp_path_factory.mktemp("torch-only")
    source = base / "dlcompare"
    source.mkdir()
    for name in ("pyproject.toml", "frameworks.lock", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # pytest too: the equivalence tests must run here as on a GPU machine without TensorFlow.
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "-e", f"{source}[torch]", "pytest", "pytest-xdist",
         "-c", str(source / "frameworks.lock")], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin"


def run_in(bin_dir, args, cwd):
    return run_tool(args, cwd, bin_dir, check=False)


def project(directory, bin_dir, frameworks):
    overrides = merge_dicts(TINY_TRAINING, {"data": {"source": str(PETIMAGES_MINI)}, "train": {"frameworks": frameworks}})
    return make_dvc_project(directory, overrides, bin_dir)


def test_the_environment_really_lacks_the_other_frameworks(torch_only_venv, tmp_path):
    probe = "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'jax', 'optax', 'torch') if u.find_spec(m)])"
    found = run_in(torch_only_venv, ["python", "-c", probe], tmp_path)
    assert found.stdout.strip() == "['torch']", found.stderr
    helped = run_in(torch_only_venv, ["dlcompare", "--help"], tmp_path)
    assert helped.returncode == 0 and "prepare" in helped.stdout


def test_pytorch_only_pipeline_runs_to_the_report(torch_only_venv, tmp_path):
    repo = project(tmp_path / "p", torch_only_venv, ["pytorch"])
    repro = run_in(torch_only_venv, ["dvc", "repro"], repo)
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    for stage in ("fetch", "prepare", "train@pytorch-0", "evaluate@pytorch-0", "compare"):
        assert f"Running stage '{stage}'" in repro.stdout
    report = (repo / "reports" / "comparison.md").read_text()
    assert "pytorch" in report and "second framework" in report
    assert "Running stage" not in run_in(torch_only_venv, ["dvc", "repro"], repo).stdout

    # The core stages with every framework made unimportable: they must not need one.
    blocked = (
        "import sys\n"
        "class NoFrameworks:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax'): raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, NoFrameworks())\n"
        "sys.argv[0] = 'dlcompare'\n"
        "from dlcompare.cli import app\n"
        "app()\n")
    for stage in (["prepare", "--out", "data/prepared-again", "--metrics", "data-again.json"], ["compare"], ["--help"]):
        ran = run_in(torch_only_venv, ["python", "-c", blocked, *stage], repo)
        assert ran.returncode == 0, ran.stderr[-2000:]
    assert (repo / "data" / "prepared-again" / "train_x.npy").exists()


@pytest.mark.parametrize("framework, extra", [("keras", ".[tensorflow]"), ("jax", ".[jax]"), ("keras-torch", ".[keras,torch]")])
def test_a_framework_that_is_not_installed_is_one_line_naming_the_extra(torch_only_venv, tmp_path, framework, extra):
    repo = project(tmp_path / "p", torch_only_venv, ["pytorch", framework])
    repro = run_in(torch_only_venv, ["dvc", "repro"], repo)
    assert repro.returncode != 0
    ours = [line for line in (repro.stdout + repro.stderr).splitlines() if line.startswith("dlcompare: error:")]
    assert len(ours) == 1 and f"lists {framework}," in ours[0] and f"'{extra}'" in ours[0], repro.stdout + repro.stderr
    assert "Traceback" not in repro.stderr
    assert not (repo / "data" / "raw").exists(), "the first stage stopped before fetching anything"

    direct = run_in(torch_only_venv, ["dlcompare", "train", "--framework", framework, "--seed", "0"], repo)
    assert direct.returncode == 1 and direct.stderr.count("\n") == 1 and extra in direct.stderr


def test_bench_of_pytorch_runs_where_only_torch_is_installed(torch_only_venv, tmp_path):
    """As on a GPU machine with PyTorch but no TensorFlow: params.yaml lists six frameworks, the bench measures one."""
    result = run_in(torch_only_venv, ["python", str(ROOT / "benchmarks" / "bench.py"), "--quick", "--frameworks",
                                      "pytorch", "--out", str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    [written] = tmp_path.glob("*.json")
    figures = json.loads(written.read_text())
    assert list(figures["train"]) == ["pytorch"] and list(figures["engines"]) == ["torch"]
    assert list(figures["tutorials"]) == ["pytorch"]  # no keras-io run: it would need TensorFlow
    pytorch = figures["train"]["pytorch"]
    assert pytorch["speedup_vs_tutorial"] == pytorch["images_per_s"] / figures["tutorials"]["pytorch"]["tutorial_images_per_s"]
    assert figures["machine"]["frameworks_imported_by_the_parent"] == []
    assert pytorch["frameworks_imported"] == ["torch"]
    assert figures["engines"]["torch"]["gemm_n"] == 256  # --quick on a CPU: no GPU-sized matrices


def test_equivalence_tests_run_without_tensorflow_against_pytorch(torch_only_venv, tmp_path):
    """As on a GPU machine without TensorFlow: PyTorch becomes the reference, the faults planted in it still fall
    far outside the tolerances, and each framework that is not installed is skipped with that reason."""
    reference = run_in(torch_only_venv, ["python", "-c", "import framework_probe; print(framework_probe.REFERENCE)"],
                       ROOT / "tests")
    assert reference.stdout.strip() == "pytorch", reference.stderr[-2000:]
    ran = run_in(torch_only_venv, ["python", "-m", "pytest", str(ROOT / "tests" / "test_equivalence.py"), "-n0", "-q",
                                   "-p", "no:cacheprovider", "-rs"], tmp_path)
    out = ran.stdout
    assert ran.returncode == 0, out[-3000:]
    passed, skipped = (int(re.search(rf"(\d+) {word}", out).group(1)) for word in ("passed", "skipped"))
    # Per framework-parametrized test, the five frameworks other than pytorch are skipped, never failed.
    assert "failed" not in out and passed > 0 and skipped > 0
    for name in ("tensorflow", "keras", "jax", "keras-jax", "keras-torch"):
        assert f"{name} is not installed here" in out, out[-3000:]
    assert "pytorch is not installed" not in out
