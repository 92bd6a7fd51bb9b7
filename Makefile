# The two set-up commands of the README: `make demo` and `make test`.
# Each creates the virtual environment (.venv) it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ucsdk demo

lint: $(STAMP)
	$(BIN)/ruff check ucsdk tests bench docs/examples
	$(BIN)/ruff format --check ucsdk tests bench docs/examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -ra --durations=10

bench: $(STAMP)
	$(BIN)/python bench/facade.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
