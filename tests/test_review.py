"""Code review across revisions: `dlcompare diff` (accuracy paired by seed and image, the gate) and `dlcompare ab`
(interleaved A/B timing of two revisions' code) on a real tiny project with planted regressions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_dvc_project, run_cli, run_tool, small_kaggle_zip
from dlcompare import review
from dlcompare.errors import UserError

# pytest-xdist runs this module on one worker, so its committed base project is built once.
pytestmark = pytest.mark.xdist_group("review")


@pytest.fixture(scope="module")
def reviewed_project(tmp_path_factory):
    """A pytorch-only project at 32 px, run and committed: the base revision every test compares against."""
    base = tmp_path_factory.mktemp("review")
    source = small_kaggle_zip(base / "small.zip", per_class=500)
    project = make_dvc_project(base / "project", {
        "data": {"source": str(source)},
        "prepare": {"image_size": 32, "test_fraction": 0.3},
        "model": {"plain_cnn": {"filters": [8, 16]}},
        # One thread: beside another busy process (pytest-xdist's other worker) a 2-thread PyTorch step waits on its
        # descheduled thread at every parallel op, and a 20-step epoch took 10-35x its quiet time; one thread is
        # only slowed by the share of the core it gets, so the A/B test below measures the planted change.
        "train": {"frameworks": ["pytorch"], "epochs": 3, "batch_size": 16, "threads": 1},
        "evaluate": {"latency_runs": 5},
        # Enough work per timed epoch that a fresh process's figure is not all start-up noise.
        "speed": {"rounds": 2, "train_images": 320, "timed_epochs": 1, "inference_images": 32, "latency_calls": 5},
    })
    run_tool(["dvc", "repro"], project)
    run_tool(["git", "add", "-A"], project)
    run_tool(["git", "commit", "-qm", "base run"], project)
    return project


def test_diff_of_an_unchanged_workspace_passes_and_writes_the_comment(reviewed_project):
    result = run_cli("diff", "--fail-on-regression", cwd=reviewed_project)
    assert result.returncode == 0, result.stderr
    assert "no regression beyond the tolerance" in result.stdout
    comment = (reviewed_project / "reviews" / "diff.md").read_text()
    assert comment.startswith("## dlcompare diff: `HEAD`")
    assert "identical predictions on every test image for each of the 1 seed(s)" in comment
    assert "| pytorch |" in comment and "**Result: no regression**" in comment
    # The speed stage did not re-run: the same measurements, said as such.
    assert "the same speed-stage measurements on both sides" in comment


def test_diff_fails_the_gate_on_a_worse_model_and_names_what_changed(reviewed_project):
    # A real change that makes every prediction 'cat' (50 % on the balanced test set), as a broken threshold would.
    run_tool(["dvc", "exp", "run", "--temp", "-n", "worse", "-S", "evaluate.threshold=0.95"], reviewed_project)
    result = run_cli("diff", "HEAD", "worse", "--fail-on-regression", "--markdown", "worse.md", cwd=reviewed_project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "REGRESSION: pytorch accuracy" in result.stdout
    assert "evaluate.threshold: 0.5 → 0.95" in result.stdout
    comment = (reviewed_project / "worse.md").read_text()
    assert "worse by more than the 1-point tolerance" in comment and "(a regression)" in comment
    assert "→ 50.00 %" in comment
    # Without the flag the gate only reports.
    assert run_cli("diff", "HEAD", "worse", "--markdown", "worse.md", cwd=reviewed_project).returncode == 0


def test_diff_refuses_unknown_revisions_in_one_line(reviewed_project):
    result = run_cli("diff", "HEAD", "no-such-branch", cwd=reviewed_project)
    assert result.returncode == 1
    assert result.stderr.strip() == ("dlcompare: error: dlcompare diff: 'no-such-branch' is not a commit, branch, tag "
                                    "or `dvc exp` name of this repository")


def test_diff_refuses_to_pair_runs_scored_on_different_test_images(reviewed_project):
    side = review.load_side(review.open_revision(reviewed_project, "HEAD"))
    other = {**side, "predictions": {key: frame.iloc[::-1].reset_index(drop=True)
                                     for key, frame in side["predictions"].items()}}
    with pytest.raises(UserError, match="scored different test images"):
        review.check_same_test_images(side, other, "HEAD", "B")


def test_ab_detects_a_planted_slowdown_in_the_new_revision_and_diff_gates_on_it(reviewed_project):
    framework_file = reviewed_project / "src" / "dlcompare" / "frameworks" / "pytorch_fw.py"
    code = framework_file.read_text()
    step = "        self.optimizer.step()\n"
    assert code.count(step) == 1
    # 0.05 s per step: 1 s more per timed epoch of 20 steps, several times the epoch itself.
    framework_file.write_text(code.replace(step, step + "        __import__('time').sleep(0.05)  # planted\n"))
    run_tool(["git", "commit", "-qam", "slower step"], reviewed_project)

    result = run_cli("ab", "HEAD~1", "HEAD", "--rounds", "5", cwd=reviewed_project)
    assert result.returncode == 0, result.stderr
    record = json.loads((reviewed_project / "reviews" / "ab.json").read_text())
    rows = pd.DataFrame(record["rounds"])
    # Alternating order, every side once per round, each in its own process.
    assert rows.groupby("round")["side"].apply(list).tolist() == [["A", "B"], ["B", "A"]] * 2 + [["A", "B"]]
    verdict = record["verdicts"]["pytorch"]
    assert verdict["regression"] and verdict["ratio"] < 0.7, verdict
    assert record["a"]["environment"]["overlay"] is None  # the same pins: this environment, nothing built

    gated = run_cli("diff", "HEAD~1", "HEAD", "--fail-on-regression", cwd=reviewed_project)
    assert gated.returncode == 2 and "REGRESSION: pytorch speed" in gated.stdout
    assert "interleaved A/B rounds" in (reviewed_project / "reviews" / "diff.md").read_text()
    # ab's rounds are for HEAD~1 → HEAD only: another pair of revisions gets no speed verdict from them.
    other = run_cli("diff", "HEAD", "workspace", "--fail-on-regression", cwd=reviewed_project)
    assert other.returncode == 0 and "interleaved" not in other.stdout


def test_accuracy_gate_needs_the_whole_interval_beyond_the_tolerance():
    rng = np.random.default_rng(0)
    before = rng.random((1, 2000)) < 0.80
    slightly = before.copy()
    slightly[0, np.flatnonzero(before[0])[:10]] = False  # 0.5 points worse: within a 1-point tolerance
    much = before.copy()
    much[0, np.flatnonzero(before[0])[:200]] = False  # 10 points worse
    frames = {name: pd.DataFrame({"path": [f"{i}.jpg" for i in range(2000)], "actual": "cat",
                                  "predicted": np.where(correct[0], "cat", "dog")})
              for name, correct in (("before", before), ("slightly", slightly), ("much", much))}
    side = lambda name: {"predictions": {("f", 0): frames[name]}}  # noqa: E731
    assert not review.accuracy_changes(side("before"), side("slightly"), ["f"], [0], 1.0)["f"]["regression"]
    result = review.accuracy_changes(side("before"), side("much"), ["f"], [0], 1.0)["f"]
    assert result["regression"] and result["ci_holm"][1] < -0.01
    assert not review.accuracy_changes(side("before"), side("much"), ["f"], [0], 15.0)["f"]["regression"]


def test_pull_request_workflow_is_a_valid_github_workflow_whose_commands_exist():
    import re
    import subprocess

    from conftest import BIN, ROOT

    workflow = ROOT / ".github" / "workflows" / "review.yml"
    checked = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = workflow.read_text()
    commands = [(tool, line.split()) for tool, line in re.findall(r"\.venv/bin/(dlcompare|dvc) ([^\n#]*)", text)]
    assert {(tool, words[0]) for tool, words in commands} >= {("dlcompare", "ab"), ("dlcompare", "diff"), ("dvc", "exp")}
    for tool, words in commands:
        sub = words[:2] if tool == "dvc" else words[:1]
        shown = subprocess.run([str(BIN / tool), *sub, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        for option in (word for word in words if word.startswith("-")):
            assert re.search(rf"(?<![\w-]){option}(?![\w-])", shown.stdout), f"{tool} {' '.join(sub)} has no option {option}"


def test_speed_stages_of_two_revisions_are_described_never_judged(reviewed_project):
    side = review.load_side(review.open_revision(reviewed_project, "HEAD"))
    halved = side["rounds"].assign(train_images_per_s=side["rounds"]["train_images_per_s"] / 2)
    described = review.described_speed(side, {**side, "rounds": halved}, "pytorch")
    assert abs(described["ratio"] - 0.5) < 1e-9 and "regression" not in described
    assert "measured at different times on one machine: no verdict" in described["sentence"]
    elsewhere = halved.assign(host="another-machine")
    assert "on 2 different machines" in review.described_speed(side, {**side, "rounds": elsewhere}, "pytorch")["sentence"]
