"""`dlcompare ab [A] [B]`: the speed of two revisions (or two framework versions), timed in interleaved rounds.

Two trainings measured hours apart differ by the machine's state as much as by the change (a few per cent
here), so a speed verdict across revisions is made only from interleaved measurement: per round and per
framework, A and B each run once, each in a fresh process (the speed stage's `measure`: one warm-up epoch,
then timed epochs of the framework's own loop on the same shared batches of this workspace's
data/prepared), in the order A B in even rounds and B A in odd ones. The round pair is the unit: B/A within
a round, a t interval over rounds, Holm over the frameworks (`review.interleaved_speed`).

A side is a revision's code and params (`git archive` of src/, params.yaml, frameworks.lock into a temporary
folder; the workspace is used as it is) and the packages of its frameworks.lock, or of --lock-a/--lock-b. A
side whose pins differ from this environment runs with an overlay: the differing packages (with their
dependencies, every other package constrained to this environment's versions) installed once with
`pip install --target` into <envs>/<hash of the pins>, put first on the import path. Each side's versions are
read back in its own process and must equal its pins. `dlcompare ab HEAD HEAD` is the A/A check.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import yaml

from dlcompare.atomic import write_json
from dlcompare.errors import UserError
from dlcompare.frameworks import REGISTRY, package_versions
from dlcompare.machine import machine
from dlcompare.speed import one_round

SIDES = ("A", "B")
PROJECT_FILES = ("src", "params.yaml", "frameworks.lock")


def default_envs() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlcompare" / "envs"


def read_pins(text: str) -> dict[str, str]:
    """package -> version of a frameworks.lock's `name==version` lines."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            if not version:
                raise UserError(f"lock file line {line!r} is not `package==version`")
            pins[package.strip().lower()] = version.strip()
    return pins


def export_revision(root: Path, rev: str, into: Path) -> Path:
    """The revision's src/, params.yaml and frameworks.lock in `into` (the workspace's own folder for 'workspace')."""
    if rev == "workspace":
        return root
    from dlcompare.review import open_revision

    commit = open_revision(root, rev).commit
    listed = subprocess.run(["git", "ls-tree", "--name-only", commit], cwd=root, capture_output=True, text=True).stdout
    present = [name for name in PROJECT_FILES if name in listed.splitlines()]
    archive = subprocess.run(["git", "archive", "--format=tar", commit, *present], cwd=root, capture_output=True)
    if archive.returncode != 0:
        raise UserError(f"dlcompare ab: cannot export {PROJECT_FILES} of {rev}: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="tar")
    return into


def _same_version(installed_version: str | None, pinned: str) -> bool:
    # A local build label (torch 2.13.0+cpu) satisfies its pin (torch==2.13.0), as pip's == does.
    return installed_version is not None and installed_version.split("+")[0] == pinned


def overlay(pins: dict[str, str], envs: Path, echo) -> tuple[str | None, dict]:
    """The folder to put first on the import path so that `pins` hold (None if this environment already has
    them), building it on first use; and what it cost (path, MB, seconds, reused)."""
    here = package_versions(pins)
    differing = {p: v for p, v in pins.items() if not _same_version(here[p], v)}
    if not differing:
        return None, {"overlay": None}
    key = hashlib.sha256(json.dumps(sorted(differing.items())).encode()).hexdigest()[:12]
    folder = envs / key
    started = time.perf_counter()
    reused = (folder / ".complete").is_file()
    if not reused:
        wanted = [f"{p}=={v}" for p, v in sorted(differing.items())]
        echo(f"building an environment for {', '.join(wanted)} in {folder} (pip install --target; reused next time)")
        freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                                text=True, check=True).stdout.splitlines()
        keep = [line for line in freeze if "==" in line and line.split("==")[0].lower() not in differing]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        constraints = folder / "constraints.txt"
        constraints.write_text("\n".join(keep) + "\n")
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 "--target", str(folder / "site"), "-c", str(constraints), *wanted],
                                capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            shutil.rmtree(folder, ignore_errors=True)
            raise UserError(f"dlcompare ab: installing {' '.join(wanted)} failed ({last})")
        (folder / ".complete").write_text(" ".join(wanted) + "\n")
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return str(folder / "site"), {"overlay": str(folder), "packages": differing, "mb": round(size / 2 ** 20, 1),
                                  "build_seconds": None if reused else round(time.perf_counter() - started, 1),
                                  "reused": reused}


def side_versions(pythonpath: tuple[str, ...], packages: list[str]) -> dict[str, str | None]:
    """The versions a side's processes import (read in a process started as its rounds are)."""
    code = ("import json, sys, importlib.metadata as m\n"
            "def v(p):\n    try: return m.version(p)\n    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({p: v(p) for p in sys.argv[1:]}))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath))
    result = subprocess.run([sys.executable, "-c", code, *packages], capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout)


def prepare_side(root: Path, rev: str, lock: Path | None, frameworks: list[str], image_size: int, scratch: Path,
                 envs: Path, echo) -> dict:
    tree = export_revision(root, rev, scratch / rev.replace("/", "_"))
    lock_file = lock or tree / "frameworks.lock"
    if not lock_file.is_file():
        raise UserError(f"{lock_file} is missing: give the side's pins with --lock-a/--lock-b")
    pins = read_pins(lock_file.read_text())
    packages = list(dict.fromkeys(p for f in frameworks for p in REGISTRY[f].packages))
    unpinned = [p for p in packages if p not in pins]
    if unpinned:
        raise UserError(f"{lock_file} does not pin {', '.join(unpinned)}, which {', '.join(frameworks)} need")
    params = yaml.safe_load((tree / "params.yaml").read_text()) or {}
    size = params.get("prepare", {}).get("image_size")
    if size != image_size:
        raise UserError(f"{rev}'s params.yaml has prepare.image_size {size}, data/prepared holds {image_size} px images: "
                        "ab times both sides on the same batches, so both must use this image size")
    site, cost = overlay({p: pins[p] for p in packages}, envs, echo)
    pythonpath = tuple(filter(None, [site, str(tree / "src")]))
    versions = side_versions(pythonpath, packages)
    wrong = [f"{p} {versions[p]} (pinned {pins[p]})" for p in packages if not _same_version(versions[p], pins[p])]
    if wrong:
        raise UserError(f"dlcompare ab: side {rev} would import {', '.join(wrong)}; remove {cost.get('overlay')} and retry")
    return {"label": f"{rev} with {lock_file}" if lock else rev, "lock": str(lock_file), "versions": versions, "environment": cost,
            "pythonpath": pythonpath, "params_file": tree / "params.yaml"}


def ab(root: Path, rev_a: str, rev_b: str, frameworks: list[str], rounds: int, prepared: Path, image_size: int,
       out: Path, lock_a: Path | None = None, lock_b: Path | None = None, envs: Path | None = None, tolerance_ratio: float = 0.95,
       echo=print) -> dict:
    from dlcompare.prepared import load_info
    from dlcompare.review import interleaved_speed, open_revision

    unknown = [f for f in frameworks if f not in REGISTRY]
    if unknown:
        raise UserError(f"--frameworks {', '.join(unknown)}: not registered ({', '.join(REGISTRY)})")
    load_info(prepared, image_size)
    commits = {side: (None if rev == "workspace" else open_revision(root, rev).commit)
               for side, rev in zip(SIDES, (rev_a, rev_b))}
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dlcompare-ab-")))
        sides = {side: prepare_side(root, rev, lock, frameworks, image_size, scratch / side, envs or default_envs(), echo)
                 for side, rev, lock in zip(SIDES, (rev_a, rev_b), (lock_a, lock_b))}
        rows, where, started = [], machine(), time.perf_counter()
        for round_index in range(rounds):
            order = SIDES if round_index % 2 == 0 else SIDES[::-1]
            for framework in frameworks:
                for position, side in enumerate(order):
                    figures = one_round(framework, sides[side]["params_file"], prepared, sides[side]["pythonpath"])
                    rows.append({"round": round_index, "position": position, "side": side, "framework": framework,
                                 **figures, **where})
                    echo(f"ab round {round_index + 1}/{rounds} {framework} {side}: "
                         f"{figures['train_images_per_s']:.1f} images/s")
    verdicts = interleaved_speed({"rounds": rows}, frameworks, tolerance_ratio)
    for framework, result in verdicts.items():
        logs = [math.log(b["train_images_per_s"] / a["train_images_per_s"])
                for a, b in _round_pairs(rows, framework)]
        result["round_log_ratio_sd"] = float(np.std(logs, ddof=1)) if len(logs) > 1 else None
    record = {
        **{side.lower(): {"commit": commits[side], **{k: v for k, v in sides[side].items()
                                                      if k in ("label", "lock", "versions", "environment")}}
           for side in SIDES},
        "rounds": rows, "frameworks": frameworks, "verdicts": verdicts, "machine": where,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out, record)
    return record


def _round_pairs(rows: list[dict], framework: str):
    by_round = {}
    for row in rows:
        if row["framework"] == framework:
            by_round.setdefault(row["round"], {})[row["side"]] = row
    return [(pair["A"], pair["B"]) for _, pair in sorted(by_round.items())]
