# rccgrade — two commands from a fresh clone: `make demo` and `make test`.
# The virtual environment is (re)built only when pyproject.toml, requirements.lock or this file change,
# so a second `make test` installs nothing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
# Build tools pinned; numpy first so PyRadiomics' C extensions compile against it (no wheel for 3.11).
BOOTSTRAP := pip==25.3 setuptools==84.2.1 wheel==0.48.0 $(shell grep -E '^numpy==' requirements.lock)

.PHONY: install demo test lint format bench mutation clean lock

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(BOOTSTRAP)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet --no-build-isolation pyradiomics==3.0.1
	$(PIP) install --quiet -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c "from radiomics import cMatrices, cShape; import torch, monai, SimpleITK; print('rccgrade environment ready')"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rccgrade demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/synth.py

# Mutation testing of the modules whose silent bugs change reported numbers (mutmut, one module at a time, each
# against its own test folder, time-boxed per module for 2 cores). Not part of `make test`; writes
# bench/results/mutation.json. MUTATION_ARGS="--modules stats/roc.py --budget-s 600" narrows a run.
MUTATION_ARGS ?=
mutation: $(STAMP)
	$(BIN)/python bench/mutation.py $(MUTATION_ARGS)

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
