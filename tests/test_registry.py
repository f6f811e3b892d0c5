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
