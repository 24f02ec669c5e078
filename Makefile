# The two commands: `make run` sets up and serves; `make test` sets up and passes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pytest's worker processes (pytest-xdist): one a core; `make test TEST_WORKERS=0` runs in one process
TEST_WORKERS ?= auto

.PHONY: run test check bench install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev,local]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/lakehouse serve

check: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(VENV)/.installed-dev check
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses 8

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
