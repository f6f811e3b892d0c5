"""`dlcompare cluster run`: the train/evaluate matrix on a Ray cluster, recorded by DVC.

Ray only schedules; DVC does the rest, as on one machine. The head prepares the data once and pushes it to the
project's default DVC remote. Each cell (one framework x seed) is a Ray task: on whichever node has room it clones
the project's git commit, pulls the prepared data, runs `dvc repro --pull` of its own train@ and evaluate@ stages
and pushes their outputs and DVC's run-cache entries back to the remote. At the end the head runs `dvc repro --pull`:
DVC finds every cell in its run cache, checks the outputs out instead of training, and only `compare` runs.

Because the record is DVC's run cache, running the command again finishes only what is missing: cells that reached
the remote are restored in seconds, the others train. A cell whose node dies is retried on another node (`--retries`);
a cell that fails is reported with its log, and the others complete.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dlcompare.errors import UserError
from dlcompare.lifetime import die_with_parent
from dlcompare.train import run_name

# What train@/evaluate@ depend on besides params and data: a change here that is not committed would give the nodes
# other code than the head, and the head's run-cache lookup would miss every cell.
CODE_PATHS = ("src", "dvc.yaml", "frameworks.lock", "pyproject.toml")
LOG_DIR = Path("logs/cluster")


def _run(args: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def _git(*args: str) -> str:
    result = _run(["git", *args])
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {(result.stderr or result.stdout).strip().splitlines()[-1]}")
    return result.stdout.strip()


def _dvc(*args: str) -> None:
    """A dvc command on the head, its output shown as it comes (these can take a while)."""
    if subprocess.run([sys.executable, "-m", "dvc", *args]).returncode != 0:
        raise UserError(f"dvc {' '.join(args)} failed (its messages are above); fix that and run the command again")


def _check_project(git_remote: str) -> tuple[str, str]:
    """The commit every node works on and the URL they clone it from."""
    if not Path("dvc.yaml").is_file():
        raise UserError("no dvc.yaml here; run dlcompare cluster run from the project root")
    changed = _git("diff", "--name-only", "HEAD", "--", *CODE_PATHS)
    if changed:
        first = changed.splitlines()[0]
        raise UserError(f"{first} has uncommitted changes; the nodes run the committed code: commit it and git push first")
    url = _git("remote", "get-url", git_remote)
    commit = _git("rev-parse", "HEAD")
    _git("fetch", "--quiet", git_remote)
    if not _git("branch", "--remotes", "--contains", commit):
        raise UserError(f"commit {commit[:12]} is not on git remote {git_remote} ({url}): git push it first")
    if not _run([sys.executable, "-m", "dvc", "config", "core.remote"]).stdout.strip():
        raise UserError("the project has no default DVC remote, which the nodes share: add one with "
                        "dvc remote add -d <name> <url> (docs/cluster.md)")
    return commit, url


def _check_reachable(address: str) -> None:
    """Ray keeps retrying an address where nothing listens (minutes); a TCP connect says so in seconds."""
    if address == "auto":
        return  # Ray itself says at once when this node belongs to no cluster
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise UserError(f"--address {address}: no Ray cluster answers there; start one with ray start --head, "
                        "or pass its address (host:port, or ray://host:10001)") from None


def run(address: str, overrides: list[str], git_remote: str, retries: int, cpus_per_cell: int | None,
        workdir: str | None, gpus_per_cell: int = 0, echo=print) -> dict:
    """Run every missing cell of the matrix on the cluster, then `dvc repro --pull` here; returns per-cell results."""
    from dlcompare.params import DEFAULT_PARAMS, load_params

    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed: pip install -e '.[cluster]' on the head and on every node") from None
    commit, url = _check_project(git_remote)
    if overrides:  # exactly what `dvc exp run -S` does to params.yaml
        from dvc.utils.hydra import apply_overrides

        try:
            apply_overrides(DEFAULT_PARAMS, overrides)
        except Exception as error:  # dvc raises its own InvalidArgumentError for a malformed override
            raise UserError(f"-S {' '.join(overrides)}: {error}") from None
    params = load_params(DEFAULT_PARAMS)

    _check_reachable(address)
    try:  # before any work, so that a wrong address costs nothing
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"--address {address}: no Ray cluster there ({str(error).splitlines()[0]}); "
                        "start one with ray start --head, or pass its address") from None
    nodes = [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]
    if not nodes:
        raise UserError(f"--address {address}: the Ray cluster has no node with CPUs; start one with ray start --num-cpus=N")
    if gpus_per_cell:  # Ray would otherwise wait for such a node for ever
        nodes = [node for node in nodes if node["Resources"].get("GPU", 0) >= gpus_per_cell]
        if not nodes:
            raise UserError(f"--gpus-per-cell {gpus_per_cell}: no node of the Ray cluster has that many GPUs; start "
                            "the GPU nodes with ray start --num-gpus=N, or leave the option out for CPU cells")

    echo("cluster: preparing the data here and pushing it to the DVC remote")
    _dvc("repro", "--quiet", "prepare")
    _dvc("push", "--quiet", "prepare")
    cpus = cpus_per_cell or int(min(node["Resources"]["CPU"] for node in nodes))
    base = {
        "url": url, "commit": commit, "workdir": workdir or str(Path(tempfile.gettempdir()) / "dlcompare-cluster"),
        "params": Path(DEFAULT_PARAMS).read_text(), "lock": Path("dvc.lock").read_text(),
    }
    cells = [(framework, seed) for framework in params.train.frameworks for seed in params.train.seeds]
    gpus = f" and {gpus_per_cell} GPU(s)" if gpus_per_cell else ""
    echo(f"cluster: {len(cells)} cells ({len(params.train.frameworks)} frameworks x {len(params.train.seeds)} seeds) "
         f"on {len(nodes)} nodes, {cpus} CPU(s){gpus} each, commit {commit[:12]}")
    task = ray.remote(run_cell).options(num_cpus=cpus, num_gpus=gpus_per_cell, max_retries=retries)
    pending = {task.remote({**base, "framework": framework, "seed": seed}): run_name(framework, seed)
               for framework, seed in cells}
    results = {}
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        run_id = pending.pop(done)
        try:
            result = ray.get(done)
        except Exception as error:  # the node died more often than --retries allows, or Ray lost the task
            result = {"ok": False, "node": "?", "seconds": 0.0, "how": "lost",
                      "log": f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"}
        results[run_id] = result
        echo(_describe(run_id, result))
    ray.shutdown()

    failed = sorted(run_id for run_id, result in results.items() if not result["ok"])
    if failed:
        raise UserError(f"{len(failed)} of {len(cells)} cells failed ({', '.join(failed)}; logs in {LOG_DIR}/); "
                        "the others are in the DVC remote: run the same command again to finish only the missing ones")
    echo("cluster: every cell is in the DVC remote; dvc repro --pull restores them and runs compare")
    _dvc("repro", "--pull")
    return results


def _describe(run_id: str, result: dict) -> str:
    where = f"on node {result['node'][:8]} in {result['seconds']:.0f} s"
    if result["ok"]:
        return f"cluster: {run_id} {result['how']} {where}"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{run_id}.log"
    log.write_text(result["log"])
    last = result["log"].strip().splitlines()[-1] if result["log"].strip() else "no output"
    return f"cluster: {run_id} FAILED {where}: {last} (log: {log})"


# --- on a node: one cell ---------------------------------------------------------------------------------------------

def run_cell(cell: dict) -> dict:
    """Clone the commit, pull the prepared data, reproduce this cell's two stages and push them (a Ray task)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    started = time.monotonic()
    run_id = run_name(cell["framework"], cell["seed"])
    stages = [f"train@{run_id}", f"evaluate@{run_id}"]
    work = Path(cell["workdir"]) / f"{run_id}-{uuid.uuid4().hex[:8]}"
    # The stages run this commit's code (not whatever dlcompare this node has installed) with this node's
    # interpreter, and die with this task if the node's worker is killed.
    env = dict(os.environ, PYTHONPATH=str(work / "src"), DLCOMPARE_DIE_WITH_PARENT="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    checkout = [
        ["git", "clone", "--quiet", "--no-checkout", cell["url"], str(work)],
        ["git", "-C", str(work), "checkout", "--quiet", cell["commit"]],
    ]
    reproduce = [
        ["dvc", "pull", "--quiet", "prepare"],
        ["dvc", "repro", "--pull", "--single-item", *stages],
        ["dvc", "push", "--quiet", "--run-cache", *stages],
    ]
    log, how = [], "trained"
    try:
        for step in checkout + reproduce:
            if step is reproduce[0]:  # the head's params (with any -S) and lock (the prepared data's hash)
                (work / "params.yaml").write_text(cell["params"])
                (work / "dvc.lock").write_text(cell["lock"])
            result = subprocess.run(step, cwd=work if step in reproduce else None, env=env, capture_output=True,
                                    text=True, preexec_fn=lambda: die_with_parent(signal.SIGKILL))
            log.append(f"$ {' '.join(step)}\n{result.stdout}{result.stderr}")
            if result.returncode != 0:
                return {"ok": False, "node": node, "seconds": time.monotonic() - started, "how": "failed",
                        "log": "\n".join(log)}
            if "is cached - skipping run" in result.stdout + result.stderr:
                how = "restored from the run cache"
        return {"ok": True, "node": node, "seconds": time.monotonic() - started, "how": how, "log": "\n".join(log)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
