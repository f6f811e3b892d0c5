# Quick start: `make repro` (set up + run the pipeline), `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# dvc runs `dlcompare ...` for each stage: it must find the venv's commands.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install repro test bench clean

install: $(STAMP)

# Re-installs only when the project's dependencies or the pinned framework versions change.
# frameworks.lock constrains pip to the tested versions; the last line refreshes the per-framework
# DVC dependency folders (src/dlcompare/frameworks/deps/) from it.
$(STAMP): pyproject.toml frameworks.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[all,cluster,test]' -c frameworks.lock
	$(VENV)/bin/python -m dlcompare.frameworks
	touch $@

repro: install
	$(VENV)/bin/dvc repro

test: install
	$(VENV)/bin/python -m pytest

bench: install
	$(VENV)/bin/python benchmarks/bench.py
	$(VENV)/bin/python benchmarks/layers.py

clean:
	rm -rf $(VENV) .pytest_cache
