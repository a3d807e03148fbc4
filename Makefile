# probdyn: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -n 2
DEMO_ARGS ?= --overwrite

.PHONY: demo test test-integration test-all bench lint format clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run the install whenever pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.stamp-base

$(VENV)/.stamp-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@ $(VENV)/.stamp-base

venv: $(VENV)/.stamp-base

demo: $(VENV)/.stamp-base
	$(BIN)/probdyn run hmm_regimes $(DEMO_ARGS)

test: $(VENV)/.stamp-test
	$(BIN)/pytest $(PYTEST_ARGS)

# The README's examples and every case study's --smoke run, each in its own process.
test-integration: $(VENV)/.stamp-test
	$(BIN)/pytest $(PYTEST_ARGS) -m integration

test-all: $(VENV)/.stamp-test
	$(BIN)/pytest $(PYTEST_ARGS) -m ""

bench: $(VENV)/.stamp-bench
	$(BIN)/python bench/hmm.py $(BENCH_ARGS)
	$(BIN)/python bench/sgmcmc.py $(BENCH_ARGS)
	$(BIN)/python bench/barnn.py $(BENCH_ARGS)

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.stamp-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
