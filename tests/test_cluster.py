"""`dlcompare cluster run` on real components over loopback: a two-node Ray cluster, an S3 server (moto) as the
DVC remote and a bare git repository as the git remote, all started and stopped here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BIN, env_with_venv, make_dvc_project, run_tool, small_kaggle_zip

# pytest-xdist runs this module on one worker, so its S3 server and two-node Ray cluster is built once.
pytestmark = pytest.mark.xdist_group("cluster")

MATRIX = {
    "prepare": {"image_size": 32},
    "model": {"plain_cnn": {"filters": [8, 16]}},
    # One thread: the cells and the single-machine run then do the same arithmetic in the same order.
    "train": {"frameworks": ["pytorch", "jax"], "seeds": [0, 1], "epochs": 1, "batch_size": 16, "threads": 1},
    "evaluate": {"latency_runs": 5, "bootstrap_samples": 200},
}
HEADLINE_KEYS = ("acc", "ci_low", "ci_high", "diff", "significant")  # compare.json without the timings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    """Kill a started server and everything it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    """An S3 server and a two-node Ray cluster on 127.0.0.1; the environment every node and dvc command shares."""
    base = tmp_path_factory.mktemp("cluster")
    # What every node and every dvc command here shares: the S3 credentials come from the environment, never from git.
    extra = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                 RAY_USAGE_STATS_ENABLED="0")
    env = dict(os.environ, **extra, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    started = []

    def start(args: list[str], log: str, **node_env: str) -> subprocess.Popen:
        process = subprocess.Popen(args, env={**env, **node_env}, stdout=open(base / log, "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(process)
        return process

    s3_port = free_port()
    start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], "s3.log")
    endpoint = f"http://127.0.0.1:{s3_port}"
    import boto3

    def bucket_made():
        try:
            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name="us-east-1").create_bucket(Bucket="dlcompare")
            return True
        except Exception:
            return False

    wait_for(bucket_made, 30, "the S3 server")

    ray_port = free_port()
    address = f"127.0.0.1:{ray_port}"
    # A short temp folder: Ray's socket paths must fit in 107 characters.
    ray_temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    start([str(BIN / "ray"), "start", "--block", "--head", "--node-ip-address=127.0.0.1", f"--port={ray_port}",
           "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={ray_temp}"], "ray-head.log")

    def alive_nodes() -> int:
        status = subprocess.run([str(BIN / "ray"), "status", "--address", address], env=env, capture_output=True,
                                text=True).stdout
        active = status.split("Active:")[1].split("Pending:")[0] if "Active:" in status else ""
        return active.count("node_")

    wait_for(alive_nodes, 60, "the Ray head")

    def add_node(**node_env: str) -> subprocess.Popen:
        """A second node; its tasks see `node_env` (DLCOMPARE_HOST: a node that plays another machine)."""
        before = alive_nodes()
        node = start([str(BIN / "ray"), "start", "--block", f"--address={address}", "--node-ip-address=127.0.0.1",
                      "--num-cpus=1"], f"ray-node-{len(started)}.log", **node_env)
        wait_for(lambda: alive_nodes() > before, 60, "the second Ray node")
        return node

    yield {"env": extra, "endpoint": endpoint, "address": address, "base": base, "add_node": add_node,
           "alive_nodes": alive_nodes}
    for process in reversed(started):
        stop(process)
    shutil.rmtree(ray_temp, ignore_errors=True)


def cluster_project(loopback, name: str) -> Path:
    """A committed project whose DVC remote is the loopback S3 bucket, pushed to a bare git repository."""
    base = loopback["base"]
    source = small_kaggle_zip(base / f"{name}.zip", per_class=60)
    project = make_dvc_project(base / name, {**MATRIX, "data": {"source": str(source)}})
    run_tool(["dvc", "remote", "add", "-d", "store", f"s3://dlcompare/{name}"], project)
    run_tool(["dvc", "remote", "modify", "store", "endpointurl", loopback["endpoint"]], project)
    run_tool(["git", "commit", "-qam", "S3 remote (credentials come from the environment)"], project)
    run_tool(["git", "init", "-q", "--bare", str(base / f"{name}.git")], project)
    run_tool(["git", "remote", "add", "origin", str(base / f"{name}.git")], project)
    run_tool(["git", "push", "-q", "-u", "origin", "HEAD"], project)
    return project


def headline(project: Path) -> dict:
    """metrics/compare.json without its timing keys."""
    compared = json.loads((project / "metrics" / "compare.json").read_text())
    return {name: {key: value for key, value in entry.items() if key in HEADLINE_KEYS} for name, entry in compared.items()}


def test_matrix_on_two_nodes_matches_one_machine_and_a_fresh_clone_trains_nothing(loopback):
    env = loopback["env"]
    loopback["add_node"](DLCOMPARE_HOST="second-machine")  # a node that plays a different machine
    assert loopback["alive_nodes"]() == 2
    project = cluster_project(loopback, "matrix")
    cells = loopback["base"] / "cells"

    ran = run_tool([str(BIN / "dlcompare"), "cluster", "run", "--address", loopback["address"], "--workdir", str(cells)],
                   project, extra_env=env)
    out = ran.stdout + ran.stderr
    assert "4 cells (2 frameworks x 2 seeds) on 2 nodes, 1 CPU(s) each" in out, out
    for run in ("pytorch-0", "pytorch-1", "jax-0", "jax-1"):
        assert f"cluster: {run} trained on node" in out, out
        # The head's own dvc repro --pull found every cell in the run cache: it trained and evaluated nothing.
        assert f"Stage 'train@{run}' is cached - skipping run" in out, out
        assert f"Stage 'evaluate@{run}' is cached - skipping run" in out, out
    assert "Running stage 'train@" not in out and "Running stage 'compare'" in out, out
    nodes = {line.split("on node ")[1].split()[0] for line in out.splitlines() if " trained on node " in line}
    assert len(nodes) == 2, out  # both nodes took cells

    # Two machines: their runs' epoch rates are not pooled into one figure per framework, nor into the headline.
    comparison = json.loads((project / "reports" / "comparison.json").read_text())
    machines = comparison["machines"]
    assert len(machines) == 2 and "second-machine" in machines, machines
    assert sorted(run for m in machines.values() for run in m["runs"]) == ["jax-0", "jax-1", "pytorch-0", "pytorch-1"]
    assert all(entry["epoch_images_per_s"] is None for entry in comparison["frameworks"].values())
    assert not any("images_per_s" in entry for entry in json.loads((project / "metrics" / "compare.json").read_text()).values())
    report = (project / "reports" / "comparison.md").read_text()
    assert "Runs trained on 2 machines" in report and "(host second-machine)" in report, report
    assert comparison["speed_design"]["machine"]["host"] != "second-machine"  # the speed stage ran on the head alone
    assert not any(cells.iterdir()), "a cell left its clone behind"

    # The record: commit what dvc repro wrote, push git and the DVC cache; a fresh clone pulls and recomputes nothing.
    run_tool(["git", "add", "-A"], project, extra_env=env)
    run_tool(["git", "commit", "-qm", "the matrix, from the cluster"], project, extra_env=env)
    run_tool(["git", "push", "-q"], project, extra_env=env)
    run_tool(["dvc", "push", "-q"], project, extra_env=env)
    reader = loopback["base"] / "reader"
    run_tool(["git", "clone", "-q", str(loopback["base"] / "matrix.git"), str(reader)], loopback["base"], extra_env=env)
    run_tool(["dvc", "pull", "-q"], reader, extra_env=env)
    status = run_tool(["dvc", "status"], reader, extra_env=env).stdout
    assert "Data and pipelines are up to date" in status, status
    assert "Running stage" not in run_tool(["dvc", "repro"], reader, extra_env=env).stdout
    assert json.loads((reader / "metrics" / "train" / "jax-1.json").read_text())["epochs"] == 1

    # The same matrix on one machine, no cluster, no remote: the same comparison (timings aside).
    single = loopback["base"] / "single"
    run_tool(["git", "clone", "-q", str(loopback["base"] / "matrix.git"), str(single)], loopback["base"], extra_env=env)
    run_tool(["git", "checkout", "-q", "HEAD~1"], single, extra_env=env)  # the commit the cluster ran, before its results
    run_tool(["dvc", "remote", "remove", "store"], single, extra_env=env)
    alone = run_tool(["dvc", "repro"], single, extra_env=env).stdout
    assert "Running stage 'train@jax-1'" in alone
    assert headline(single) == headline(project)
    one_machine = json.loads((single / "metrics" / "compare.json").read_text())
    assert all(one_machine[name]["images_per_s"] > 0 for name in ("pytorch", "jax"))  # one machine: pooled
    # Down to the last bit of every run's test loss and AUC, which differ from run to run (so equal means the same run).
    scores = {}
    for where in (project, single):
        scores[where] = {path.name: {key: value for key, value in json.loads(path.read_text()).items()
                                     if key in ("accuracy", "log_loss", "roc_auc", "confusion")}
                         for path in sorted((where / "metrics" / "eval").glob("*.json"))}
    assert len(scores[project]) == 4 and scores[single] == scores[project]
    assert len({run["log_loss"] for run in scores[project].values()}) == 4


def test_a_node_killed_mid_cell_loses_only_that_cell_and_a_rerun_finishes_it(loopback):
    env = loopback["env"]
    if loopback["alive_nodes"]() < 2:
        loopback["add_node"]()
    worker = loopback["add_node"]()  # the node that dies; the other two finish the matrix
    project = cluster_project(loopback, "faults")
    cells = loopback["base"] / "fault-cells"
    command = [str(BIN / "dlcompare"), "cluster", "run", "--address", loopback["address"], "--workdir", str(cells),
               "--retries", "0", "-S", "train.seeds=[3,4]"]
    running = subprocess.Popen(command, cwd=project, env={**env_with_venv(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def cells_running() -> int:
        listing = subprocess.run(["pgrep", "-f", "dvc repro --pull --single-item"], capture_output=True, text=True)
        return len(listing.stdout.split())

    wait_for(lambda: cells_running() >= 3 or running.poll() is not None, 240, "three cells training at once")
    assert running.poll() is None, running.stdout.read()
    stop(worker)  # the node and every process it started: a machine gone mid-cell
    out, _ = running.communicate(timeout=600)
    assert running.returncode == 1, out
    assert "1 of 4 cells failed" in out and "run the same command again" in out, out
    assert out.count(" trained on node ") == 3, out
    assert not list(project.glob("models/*")), "the failed command must not have left a partial result here"

    again = run_tool([str(BIN / "dlcompare"), "cluster", "run", "--address", loopback["address"], "--workdir", str(cells)],
                     project, extra_env=env)
    out = again.stdout + again.stderr
    assert out.count("restored from the run cache") == 3 and out.count(" trained on node ") == 1, out
    assert "Running stage 'train@" not in out and "Running stage 'compare'" in out, out
    assert {"pytorch", "jax"} <= set(json.loads((project / "metrics" / "compare.json").read_text()))
    assert sorted(path.name for path in (project / "metrics" / "train").glob("*.json")) == [
        "jax-3.json", "jax-4.json", "pytorch-3.json", "pytorch-4.json"]


def test_what_stops_the_command_is_one_line_before_any_work(tmp_path):
    """No git remote, an unpushed commit, no DVC remote, uncommitted code, no Ray cluster: each is one line."""
    project = make_dvc_project(tmp_path / "project", MATRIX)
    dlcompare = [str(BIN / "dlcompare"), "cluster", "run", "--address", f"127.0.0.1:{free_port()}"]

    def refused(expected: str) -> None:
        result = run_tool(dlcompare, project, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("dlcompare: error: ") and expected in line, line
        assert not (project / "data" / "prepared").exists()

    refused("git remote get-url origin failed")
    run_tool(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], project)
    run_tool(["git", "remote", "add", "origin", str(tmp_path / "origin.git")], project)
    refused("is not on git remote origin")
    run_tool(["git", "push", "-q", "-u", "origin", "HEAD"], project)
    refused("no default DVC remote")
    run_tool(["dvc", "remote", "add", "-d", "store", str(tmp_path / "store")], project)
    with open(project / "src" / "dlcompare" / "report.py", "a") as edited:
        edited.write("# an edit not yet committed\n")
    refused("src/dlcompare/report.py has uncommitted changes")
    run_tool(["git", "commit", "-qam", "remote, edit"], project)
    run_tool(["git", "push", "-q"], project)
    refused("no Ray cluster answers there")


def test_gpu_cells_on_a_cluster_without_gpus_are_refused_in_one_line(loopback):
    """--gpus-per-cell reserves GPUs through Ray; where no node has them, Ray would wait for ever: one line instead."""
    project = cluster_project(loopback, "gpus")
    result = run_tool([str(BIN / "dlcompare"), "cluster", "run", "--address", loopback["address"], "--gpus-per-cell", "1"],
                      project, extra_env=loopback["env"], check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("dlcompare: error: --gpus-per-cell 1: no node of the Ray cluster has that many GPUs"), line
    assert not (project / "data" / "prepared").exists()
