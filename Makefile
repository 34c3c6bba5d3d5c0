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

.PHONY: help setup init repro test test-fast lint bench dag metrics plots monitor serve replay sweep review push pull clean

# Defaults of the values a user may set (make sweep GRID="..." JOBS=2).
#   make sweep GRID="train.learning_rate=0.02,0.05,0.1 train.min_child_samples=50,200" JOBS=2
GRID ?= train.learning_rate=0.03,0.1 train.num_leaves=31,127
JOBS ?= 2
BASE ?= HEAD
HOST = 127.0.0.1
PORT = 8000
REMOTE ?=

# Every value a user gives reaches the tools as an environment variable, quoted where the recipe
# uses it ("$$MLPIPE_ARG_TARGET"), never pasted into the shell line: a column named `a"; rm x; "`
# or `$HOME` is a column name, not a command. `:=` with $(value ...) takes the text as typed,
# unexpanded by make too (a value holding `$(shell ...)` stays text).
export MLPIPE_ARG_DATA := $(value DATA)
export MLPIPE_ARG_TARGET := $(value TARGET)
export MLPIPE_ARG_POSITIVE := $(value POSITIVE)
export MLPIPE_ARG_TIME := $(value TIME)
export MLPIPE_ARG_FORMAT := $(value FORMAT)
export MLPIPE_ARG_SEP := $(value SEP)
export MLPIPE_ARG_NAMES := $(value NAMES)
export MLPIPE_ARG_BASE := $(value BASE)
export MLPIPE_ARG_WHERE := $(value WHERE)
export MLPIPE_ARG_SOURCE := $(value SOURCE)
export MLPIPE_ARG_GRID := $(value GRID)
export MLPIPE_ARG_JOBS := $(value JOBS)
export MLPIPE_ARG_HOST := $(value HOST)
export MLPIPE_ARG_PORT := $(value PORT)
export MLPIPE_ARG_REMOTE := $(value REMOTE)
export MLPIPE_ARG_STAGE := $(value STAGE)
export MLPIPE_ARG_ARTIFACT := $(value ARTIFACT)
# Make itself exports variables set on its command line, expanding them as it does (a `$(shell ...)`
# in a value would run): these reach the recipes only as the MLPIPE_ARG_ copies above.
unexport DATA TARGET POSITIVE TIME FORMAT SEP HEADER NAMES FORCE BASE WHERE SOURCE GRID JOBS HOST PORT REMOTE STAGE ARTIFACT
MLPIPE := $(BIN)/mlpipe

help:
	@echo "make init    DATA=path/or/url TARGET=column [POSITIVE=label] [TIME=column] [FORCE=1]: point params.yaml at your table"
	@echo "             [FORMAT=csv or parquet when the file name does not say]"
	@echo "             CSV files: [SEP=';' or SEP=whitespace] [HEADER=0 for no header line] [NAMES=a,b,c for the column names]"
	@echo "make repro   build .venv if needed, then run the pipeline (dvc repro); a failing stage's last good outputs are put back"
	@echo "make test    build .venv (with the test tools) if needed, then run the test suite"
	@echo "make test-fast  the in-process tests only (no dvc repro in temporary copies, no Dask cluster, no browser): the inner loop"
	@echo "make lint    ruff check and ruff format --check"
	@echo "make bench   time the pipeline against a bare script, a sweep, the prediction service, what a kill -9 loses from its log (writes bench/results/)"
	@echo "make dag     print the stage graph"
	@echo "make metrics the headline metrics and the drift verdict (every metric: dvc metrics show)"
	@echo "make plots   write reports/plots.html: every plot as SVG, readable offline (BASE=rev overlays a revision)"
	@echo "make monitor print the drift verdict"
	@echo "make serve   the prediction API on the model dvc.yaml names (HOST=127.0.0.1 PORT=8000; docs/serving.md)"
	@echo "             [STAGE=prod serves the version GTO's tags assign to that stage, fetched from the DVC cache or remote]"
	@echo "             [ARTIFACT=name: another artifact of dvc.yaml than the one of type model]"
	@echo "make replay  send rows of monitor.current_source through the running service (WHERE=\"AGEP < 30\" for a subset)"
	@echo "make sweep   queue the GRID of experiments, run JOBS at a time, show them with their state"
	@echo "make review  write reports/review.md against BASE (default HEAD)"
	@echo "make push    dvc push: data, models and reports to the default remote (REMOTE=name for another)"
	@echo "make pull    dvc pull: fetch them back into the workspace"
	@echo "Through make every failure exits 2. CI gates call the command itself, which exits 0 ok, 1 retrain/regression,"
	@echo "2 user error, 3 corrupt file: .venv/bin/mlpipe monitor, .venv/bin/mlpipe review --help (docs/troubleshooting.md)"

# A venv older than requirements.txt or pyproject.toml is stale: rebuild it from scratch
# so that it holds exactly the pinned set. The first build takes minutes: say so, and show
# pip's line per package (later runs skip this rule and stay quiet).
$(STAMP): requirements.txt pyproject.toml
	@echo "building $(VENV) from requirements.txt (first time: a few minutes; one line per package)"
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(BIN)/python -m pip --disable-pip-version-check install --progress-bar off -r requirements.txt \
		| grep --line-buffered -E '^(Collecting|Processing|Successfully installed)' | sed -u 's/^Successfully installed .*/installed the pinned packages/'
	$(PIP) install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Test and lint tools (requirements-dev.txt) on top of the pipeline's own pins; `make repro` does not need them.
$(DEV_STAMP): requirements-dev.txt $(STAMP)
	@echo "adding the test tools from requirements-dev.txt to $(VENV)"
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	touch $(DEV_STAMP)

# Your own table: profiles it and rewrites the data-specific sections of params.yaml.
init: setup
	@test -n "$$MLPIPE_ARG_DATA" -a -n "$$MLPIPE_ARG_TARGET" || { echo "error: init: give DATA=path/or/url and TARGET=column" >&2; exit 2; }
	$(MLPIPE) init --data="$$MLPIPE_ARG_DATA" --target="$$MLPIPE_ARG_TARGET" $${MLPIPE_ARG_POSITIVE:+--positive="$$MLPIPE_ARG_POSITIVE"} \
		$${MLPIPE_ARG_TIME:+--time="$$MLPIPE_ARG_TIME"} $${MLPIPE_ARG_FORMAT:+--format="$$MLPIPE_ARG_FORMAT"} $${MLPIPE_ARG_SEP:+--sep="$$MLPIPE_ARG_SEP"} \
		$${MLPIPE_ARG_NAMES:+--names="$$MLPIPE_ARG_NAMES"} $(if $(filter 0,$(value HEADER)),--no-header) $(if $(value FORCE),--force)

# dvc repro; when a stage fails, the outputs DVC removed before running it are put back.
repro: setup
	$(MLPIPE) repro
	@$(MLPIPE) metrics

# One worker per core; --dist worksteal hands tests to whichever worker is idle (the long
# integration tests would otherwise pile up on one worker with their file).
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal

# The inner loop: every test that runs in process, none that runs dvc repro in a temporary copy
# or starts a Dask cluster of worker processes or a browser.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal -m "not integration and not cluster and not browser"

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench docs/tools
	$(BIN)/ruff format --check src tests bench docs/tools

# Every figure of docs/benchmarks.md, next to its target, into bench/results/ (about half an hour).
bench: setup
	$(BIN)/python bench/pipeline_overhead.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/noop_breakdown.py
	$(BIN)/python bench/wide_table.py
	$(BIN)/python bench/log_kill.py

dag: setup
	dvc dag

metrics: setup
	$(MLPIPE) metrics

# dvc plots show/diff pages load Vega from a CDN; this one is static SVG and works offline.
plots: setup
	$(MLPIPE) plots --output reports/plots.html $(if $(filter command line,$(origin BASE)),--base="$$MLPIPE_ARG_BASE")

# Reads metrics/drift.json as `dvc repro` left it. For a CI gate call `.venv/bin/mlpipe monitor`
# itself: make turns every failing recipe into exit 2, the command exits 1 for "retrain".
monitor: setup
	$(MLPIPE) monitor metrics/drift.json

serve: setup
	$(MLPIPE) serve --host="$$MLPIPE_ARG_HOST" --port="$$MLPIPE_ARG_PORT" --evaluation metrics/evaluation.json \
		--training-params metrics/train/params.yaml --card models/card.json $${MLPIPE_ARG_STAGE:+--stage="$$MLPIPE_ARG_STAGE"} \
		$${MLPIPE_ARG_ARTIFACT:+--artifact="$$MLPIPE_ARG_ARTIFACT"}

# Fills the service's prediction log: the latest period of the current rows, or the rows WHERE selects.
replay: setup
	$(MLPIPE) replay --url="http://$$MLPIPE_ARG_HOST:$$MLPIPE_ARG_PORT" $${MLPIPE_ARG_WHERE:+--where="$$MLPIPE_ARG_WHERE"} \
		$${MLPIPE_ARG_SOURCE:+--source="$$MLPIPE_ARG_SOURCE"}

# GRID is one argument: the tool splits it into overrides at spaces.
sweep: setup
	$(MLPIPE) sweep "$$MLPIPE_ARG_GRID" --jobs="$$MLPIPE_ARG_JOBS"

# What a reviewer pastes into a pull request: make review BASE=main
review: setup
	$(MLPIPE) review --base="$$MLPIPE_ARG_BASE" --output reports/review.md --plots-dir reports/review_plots \
		--drift metrics/drift.json

# The default remote is a folder beside the clone (see .dvc/config); REMOTE=s3 for another one.
push: setup
	dvc push $${MLPIPE_ARG_REMOTE:+-r "$$MLPIPE_ARG_REMOTE"}

pull: setup
	dvc pull $${MLPIPE_ARG_REMOTE:+-r "$$MLPIPE_ARG_REMOTE"}

clean:
	rm -rf $(VENV)
