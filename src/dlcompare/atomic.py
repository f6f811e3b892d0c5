"""Write outputs so that a crash never leaves something that looks finished."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dlcompare.errors import raise_if_terminated


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raise_if_terminated()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2) + "\n")


def _remove_scratch_of_dead_runs(target: Path) -> None:
    """Scratch folders that a killed run (kill -9, power loss) left beside `target`; a live run's are kept."""
    for scratch in target.parent.glob(f".{target.name}.partial-*"):
        owner = scratch.name.removeprefix(f".{target.name}.partial-").split("-", 1)[0]
        if owner.isdigit() and _alive(int(owner)):
            continue
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(target.with_name(f".{target.name}.old"), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def building_dir(target: Path) -> Iterator[Path]:
    """Yield an empty sibling folder; on success it replaces `target`, on error it vanishes.

    Its name carries this process's id, so the next run can tell a dead run's scratch from a live one's.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_scratch_of_dead_runs(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp makes it private; outputs should look like any folder
    try:
        yield work
        raise_if_terminated()  # a SIGTERM whose exception Python dropped must still keep the previous output
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(work, target)
    shutil.rmtree(old, ignore_errors=True)
