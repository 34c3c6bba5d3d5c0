# Two commands on a fresh machine: `make repro` and `make test`. Both build .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-requirements
# Stage commands call `python`: make it the venv's, whatever the caller's PATH holds.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: help setup repro test bench dag metrics monitor clean

help:
	@echo "make repro   build .venv if needed, then run the pipeline (dvc repro)"
	@echo "make test    build .venv if needed, then run the test suite"
	@echo "make bench   time the pipeline against a bare script (writes bench/results/)"
	@echo "make dag     print the stage graph"
	@echo "make metrics show the current metrics"
	@echo "make monitor print the drift verdict; exits 1 when retraining is recommended"

# A venv older than requirements.txt or pyproject.toml is stale: rebuild it from scratch
# so that it holds exactly the pinned set.
$(STAMP): requirements.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

repro: setup
	dvc repro

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/pipeline_overhead.py

dag: setup
	dvc dag

metrics: setup
	dvc metrics show

# Reads metrics/drift.json as `dvc repro` left it; non-zero exit = retrain (for CI gates).
monitor: setup
	$(BIN)/python -m mlpipe.monitoring metrics/drift.json

clean:
	rm -rf $(VENV)
