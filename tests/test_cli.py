import subprocess
import sys

from conftest import ROOT, run_cli, write_params


def test_help_lists_every_stage_without_importing_a_framework(tmp_path):
    result = run_cli("--help", cwd=tmp_path, check=True)
    for stage in ("check", "fetch", "prepare", "train", "evaluate", "speed", "compare", "predict"):
        assert stage in result.stdout
    assert "<bool>" not in result.stdout and "╭" not in result.stdout  # plain click help, no type column for --help
    predict_help = run_cli("predict", "--help", cwd=tmp_path, check=True).stdout
    assert predict_help.startswith("Usage: dlcompare predict [OPTIONS] {IMAGE}...") and "{images}" not in predict_help
    probe = "import sys, dlcompare.cli; print(sorted(m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_missing_params_file_is_one_line_error(tmp_path):
    result = run_cli("prepare", "--params", "nope.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["dlcompare: error: nope.yaml: params file not found; run from the project root or pass --params"]


def test_invalid_param_names_key_and_value(tmp_path):
    write_params(tmp_path, "prepare:\n  test_fraction: 1.5\n")
    result = run_cli("prepare", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prepare.test_fraction" in lines[0] and "1.5" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_param_key_is_refused(tmp_path):
    write_params(tmp_path, "prepare:\n  image_sise: 64\n")
    result = run_cli("prepare", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown key 'prepare.image_sise'" in result.stderr


def test_project_params_file_is_valid():
    from dlcompare.params import load_params

    params = load_params(ROOT / "params.yaml")
    assert params.prepare.test_fraction == 0.2


def test_dvc_dependency_folders_match_the_registry_and_the_lock():
    """dvc.yaml's train@<name> stages depend on deps/<name>/: stale links or pins would hide a change from DVC."""
    from dlcompare.frameworks import DEPENDENCY_LINKS, NAMES, sync_dependency_links

    assert sync_dependency_links(check=True) == []
    assert sorted(p.name for p in DEPENDENCY_LINKS.iterdir()) == sorted(NAMES)
