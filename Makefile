# Two commands do the whole set-up on a fresh machine: `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
CONDA := $(firstword $(shell command -v micromamba mamba conda 2>/dev/null))
# Two locked stacks (README "Supported platforms"): tools/platform_stack.sh picks "modern" on macOS and on Linux
# with glibc >= 2.39, "default" on older Linux. Override with `make env STACK=modern` (or default).
STACK ?= $(shell sh tools/platform_stack.sh)
ifeq ($(STACK),modern)
ENV_FILE := environment.modern.yml
LOCK := requirements.modern.lock.txt
else ifeq ($(STACK),default)
ENV_FILE := environment.yml
LOCK := requirements.lock.txt
else
$(error STACK must be "default" or "modern", not "$(STACK)")
endif

.PHONY: help env repro no-demo check test test-quick test-modern lab lock export dvc-yaml hooks stage schema bench bench-pipeline bench-validate bench-score bench-spark bench-engines monitor-demo FORCE

help:
	@echo "make env     create .venv from the lock of this platform's stack (STACK=default|modern to choose)"
	@echo "make repro   bootstrap the environment and run the pipeline (dvc repro)"
	@echo "make no-demo  leave the example business out: its stage, params and outputs (for a project on its own data)"
	@echo "make check   check params.yaml against every stage's contract and the data in sight (every stage runs it first)"
	@echo "make test    bootstrap the environment and run the tests"
	@echo "make test-quick  the tests without the slow end-to-end pipeline runs"
	@echo "make test-modern  the modern stack in a Debian trixie root (glibc 2.41): test-quick and a small dvc repro (root)"
	@echo "make lab     start JupyterLab on nbs/"
	@echo "make lock    regenerate both locks: requirements.lock.txt and requirements.modern.lock.txt"
	@echo "make export  nbdev-export, clean the notebooks (tools/clean_notebooks.py) and regenerate dvc.yaml, after editing them"
	@echo "make dvc-yaml  write dvc.yaml from the catalog's PIPELINE and the stage modules' imports (never edit it by hand)"
	@echo "make hooks   install the pre-commit hooks and the notebook merge/diff drivers"
	@echo "make monitor-demo  a year of monthly batches, drifting from month 7, scored and monitored: a line a month"
	@echo "make stage NAME=<name>  scaffold a new stage: notebook, catalog entry, dvc.yaml stage, params.yaml section"
	@echo "make schema  propose schema changes from the current data (tmp/schema-candidates/); data/schema/ is untouched"
	@echo "make bench   speed and memory figures (bench-pipeline, bench-validate, bench-score), printed, never asserted;"
	@echo "             SIZES=\"20000 200000\" picks the customer counts of the memory runs (default 20000 200000 1000000)"
	@echo "make bench-pipeline  forced-run seconds per stage, notebook/script ratio, no-op repro vs status, rerun diffs,"
	@echo "             seconds and peak memory per stage at each of SIZES"
	@echo "make bench-validate  validate wall time and peak memory, in memory and on Beam, at each of SIZES"
	@echo "make bench-score  scoring time and memory on 1M rows (needs a finished make repro)"
	@echo "make bench-spark  the Spark engine's fixed costs: cluster start, TensorFlow in the executors, 1 vs 2 workers"
	@echo "make bench-engines  dvc repro on pandas and on a local Spark cluster: seconds and peak memory per stage at"
	@echo "             CUSTOMERS (default 1000000), e.g. make bench-engines CUSTOMERS=10000000 ENGINES=spark"

env: $(STAMP)

# uv writes no .pyc files unless asked (--compile-bytecode; pip, on the conda path, compiles by default): without
# them every stage, a new process, compiles what it imports, on every run where PYTHONDONTWRITEBYTECODE is set.
# Rebuilt only when the lock or the package metadata changes, or the stack differs from the one the stamp names,
# so a second `make` installs nothing.
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(STACK))
$(STAMP): FORCE
endif
$(STAMP): $(LOCK) pyproject.toml
ifneq ($(CONDA),)
	@echo ">> $(STACK) stack: creating the environment with $(notdir $(CONDA)) from $(ENV_FILE)"
	if [ -s $(STAMP) ] && [ "$$(cat $(STAMP))" != $(STACK) ]; then rm -rf $(VENV); fi  # a conda env switching stacks starts afresh
	[ -x $(BIN)/python ] || $(CONDA) env create --yes --prefix $(VENV) --file $(ENV_FILE)
	$(BIN)/python -m pip install --no-deps --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
else
	@echo ">> $(STACK) stack, no conda found: creating $(VENV) with $(PYTHON) and installing $(LOCK) with uv"
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep -E '^uv==' $(LOCK) | cut -d' ' -f1)"
	$(BIN)/python -m uv pip sync --python $(BIN)/python --compile-bytecode --require-hashes $(LOCK)
	$(BIN)/python -m uv pip install --python $(BIN)/python --no-deps --compile-bytecode -e .
endif
	echo $(STACK) > $(STAMP)

FORCE:

repro: $(STAMP)
	$(BIN)/dvc repro

no-demo:
	python3 tools/drop_demo.py

check: $(STAMP)
	$(BIN)/ml-lifecycle check

test: $(STAMP)
	$(BIN)/python -m pytest

test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

# The project config cleans notebooks under nbs/ on save (outputs stay in the browser), so saving a notebook that
# was only run leaves its DVC hash alone. See jupyter_server_config.py.
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs --config=jupyter_server_config.py

lock: $(STAMP)
	$(BIN)/python tools/lock_env.py

# The modern stack on a machine whose glibc is too old for it (as root): a cached Debian trixie root, the modern
# lock installed there, `make test-quick` and a small-sample `dvc exp run` inside it. See tools/test_modern.sh.
test-modern:
	tools/test_modern.sh

# One cleaning rule for notebooks: tools/clean_notebooks.py, as the JupyterLab save hook and pre-commit use it.
export: $(STAMP)
	$(BIN)/nbdev-export && $(BIN)/python tools/clean_notebooks.py && $(MAKE) --no-print-directory dvc-yaml

# PYTHONPATH: this checkout's package, even where the environment has another one installed (a copy of the project)
dvc-yaml: $(STAMP)
	PYTHONPATH=src $(BIN)/python -c "import sys; from ml_lifecycle.cli import main; sys.exit(main(['dvc-yaml']))"

# Sizes (demo_data.n_customers) of the peak-memory runs of bench-pipeline and bench-validate, e.g. a quick
# `make bench SIZES=20000`; 1M customers takes the longest.
SIZES ?= 20000 200000 1000000

bench: bench-pipeline bench-validate bench-score bench-spark bench-engines

bench-pipeline: $(STAMP)
	$(BIN)/python tools/bench_pipeline.py --sizes $(SIZES)

bench-score: $(STAMP)
	$(BIN)/python tools/bench_score.py 1000000

# Re-infer candidate schemas from data/raw (and data/features) and print their difference from the committed ones.
schema: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -c "from ml_lifecycle.stages.validate import propose_schemas; propose_schemas()"

bench-validate: $(STAMP)
	$(BIN)/python tools/bench_validate.py $(SIZES)

# The Spark engine's fixed costs: cluster start, TensorFlow's import in the executors, 1 against 2 workers.
bench-spark: $(STAMP)
	$(BIN)/python tools/bench_spark.py

# The whole pipeline on each engine at CUSTOMERS customers; BENCH_SET adds params (e.g. train.fit_rows=1000000).
CUSTOMERS ?= 1000000
ENGINES ?= pandas spark
bench-engines: $(STAMP)
	$(BIN)/python tools/bench_engines.py --customers $(CUSTOMERS) --engines $(ENGINES) $(if $(BENCH_SET),--set $(BENCH_SET))

# pre-commit hooks (.pre-commit-config.yaml) and nbdev's cell-by-cell notebook merge and diff drivers, which
# .gitattributes assigns to *.ipynb. Git runs drivers from the top of the work tree, so the relative path works.
hooks: $(STAMP)
	$(BIN)/pre-commit install
	git config merge.jupyternotebook.name "notebooks merged cell by cell (nbdev-merge)"
	git config merge.jupyternotebook.driver "tools/in-venv nbdev-merge %O %A %B %P"
	git config diff.jupyternotebook.command "tools/in-venv nbdev-diff-driver"

# The monitor's demo (tools/monitor_demo.py): it starts from the trained model in the workspace (`dvc repro train` runs
# first when there is none) and works in tmp/monitor-demo/, leaving the project's outputs alone.
monitor-demo: $(STAMP)
	test -f models/model.skops || $(BIN)/dvc repro train
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python tools/monitor_demo.py $$(test -f reports/backtest.json && echo --backtest)

# A new stage from the skeleton: nbs/NN_<name>.ipynb, its dvc.yaml stage and its params.yaml section.
stage: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make stage NAME=<stage_name>"; exit 2; }
	$(BIN)/python tools/new_stage.py $(NAME)
	$(BIN)/nbdev-export
	$(MAKE) --no-print-directory -o $(STAMP) dvc-yaml
