# Quick start: `make repro` (set up + run the pipeline), `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# dvc runs `dlcompare ...` for each stage: it must find the venv's commands.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install repro test bench clean

install: $(STAMP)

# Re-installs only when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

repro: install
	$(VENV)/bin/dvc repro

test: install
	$(VENV)/bin/python -m pytest

bench: install
	$(VENV)/bin/python benchmarks/bench.py

clean:
	rm -rf $(VENV) .pytest_cache
