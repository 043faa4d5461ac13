# telcoreach: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed
TESTING := $(VENV)/.installed-test

.PHONY: demo test lint format install clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

# Test tools (pytest, ruff, hypothesis, trackintel, statsmodels) only for `make test`.
$(TESTING): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TESTING)

install: $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/telcoreach demo --workspace telcoreach-demo

lint: $(TESTING)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/pytest -q -m "not slow"

format: $(TESTING)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) telcoreach-demo telcoreach-workspace .pytest_cache
