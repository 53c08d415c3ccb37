# The README's two commands: `make quickstart` (main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup quickstart test lint

setup: $(VENV)/.installed

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job on the embedded default: builds the sample corpus when missing, then three rounds of
# weak-to-strong training; prints the results table and logs the run to MLflow (mlruns/).
quickstart: setup
	$(BIN)/w2svqa run experiments/quickstart.yaml --output-dir runs/quickstart

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
