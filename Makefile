# Two commands on a fresh machine: `make repro` and `make test`. Both build .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-requirements
DEV_STAMP := $(VENV)/.installed-from-requirements-dev
# Stage commands call `python`: make it the venv's, whatever the caller's PATH holds.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: help setup init repro test lint bench dag metrics plots monitor serve replay sweep review push pull clean

help:
	@echo "make init    DATA=path/or/url TARGET=column [POSITIVE=label] [TIME=column] [FORCE=1]: point params.yaml at your table"
	@echo "make repro   build .venv if needed, then run the pipeline (dvc repro)"
	@echo "make test    build .venv (with the test tools) if needed, then run the test suite"
	@echo "make lint    ruff check and ruff format --check"
	@echo "make bench   time the pipeline against a bare script, a sweep, the prediction service (writes bench/results/)"
	@echo "make dag     print the stage graph"
	@echo "make metrics show the current metrics"
	@echo "make plots   write reports/plots.html: every plot as SVG, readable offline (BASE=rev overlays a revision)"
	@echo "make monitor print the drift verdict; exits 1 when retraining is recommended"
	@echo "make serve   the prediction API on the model dvc.yaml names (HOST=127.0.0.1 PORT=8000; docs/serving.md)"
	@echo "make replay  send rows of monitor.current_source through the running service (WHERE=\"AGEP < 30\" for a subset)"
	@echo "make sweep   queue the GRID of experiments, run JOBS at a time, show them (dvc exp show)"
	@echo "make review  write reports/review.md against BASE (default HEAD); exits 1 on a guarded regression"
	@echo "make push    dvc push: data, models and reports to the default remote (REMOTE=name for another)"
	@echo "make pull    dvc pull: fetch them back into the workspace"

# A venv older than requirements.txt or pyproject.toml is stale: rebuild it from scratch
# so that it holds exactly the pinned set.
$(STAMP): requirements.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Test and lint tools (requirements-dev.txt) on top of the pipeline's own pins; `make repro` does not need them.
$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	touch $(DEV_STAMP)

# Your own table: profiles it and rewrites the data-specific sections of params.yaml.
init: setup
	@test -n "$(DATA)" -a -n "$(TARGET)" || { echo "error: init: give DATA=path/or/url and TARGET=column" >&2; exit 2; }
	$(BIN)/python -m mlpipe.tools.init --data "$(DATA)" --target "$(TARGET)" $(if $(POSITIVE),--positive "$(POSITIVE)") \
		$(if $(TIME),--time "$(TIME)") $(if $(FORCE),--force)

repro: setup
	dvc repro
	@$(BIN)/python -m mlpipe.tools.summary --evaluation metrics/evaluation.json --drift metrics/drift.json \
		--figures reports/figures --reports reports/drift

# One worker per core; --dist worksteal hands tests to whichever worker is idle (the long
# integration tests would otherwise pile up on one worker with their file).
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# Every figure of docs/benchmarks.md, next to its target, into bench/results/ (about half an hour).
bench: setup
	$(BIN)/python bench/pipeline_overhead.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/noop_breakdown.py

dag: setup
	dvc dag

metrics: setup
	dvc metrics show

# dvc plots show/diff pages load Vega from a CDN; this one is static SVG and works offline.
plots: setup
	$(BIN)/python -m mlpipe.tools.plots_page --output reports/plots.html $(if $(filter command line,$(origin BASE)),--base $(BASE))

# Reads metrics/drift.json as `dvc repro` left it; non-zero exit = retrain (for CI gates).
monitor: setup
	$(BIN)/python -m mlpipe.monitoring metrics/drift.json

HOST = 127.0.0.1
PORT = 8000
serve: setup
	$(BIN)/python -m mlpipe.tools.serve --host $(HOST) --port $(PORT) --evaluation metrics/evaluation.json --training-params metrics/train/params.yaml

# Fills the service's prediction log: the latest period of the current rows, or the rows WHERE selects.
replay: setup
	$(BIN)/python -m mlpipe.tools.replay --url http://$(HOST):$(PORT) $(if $(WHERE),--where "$(WHERE)") $(if $(SOURCE),--source "$(SOURCE)")

# The default sweep: 2 learning rates x 2 tree sizes. Override, e.g.
#   make sweep GRID="train.learning_rate=0.02,0.05,0.1 train.min_child_samples=50,200" JOBS=2
GRID ?= train.learning_rate=0.03,0.1 train.num_leaves=31,127
JOBS ?= 2
sweep: setup
	$(BIN)/python -m mlpipe.tools.experiments $(GRID) --jobs $(JOBS)

# What a reviewer pastes into a pull request: make review BASE=main
BASE ?= HEAD
review: setup
	$(BIN)/python -m mlpipe.tools.review --base $(BASE) --output reports/review.md --plots-dir reports/review_plots \
		--drift metrics/drift.json

# The default remote is a folder beside the clone (see .dvc/config); REMOTE=s3 for another one.
REMOTE ?=
push: setup
	dvc push $(if $(REMOTE),-r $(REMOTE))

pull: setup
	dvc pull $(if $(REMOTE),-r $(REMOTE))

clean:
	rm -rf $(VENV)
