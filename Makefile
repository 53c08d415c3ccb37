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

CLASSICAL := blockiness blur exposure niqe noise stutter

# Until the round runner lands: corpus -> classical teachers' scores -> ensemble and synthetic pairs.
quickstart: setup
	$(BIN)/w2svqa data sample --out data/sample
	for t in $(CLASSICAL); do \
	  $(BIN)/w2svqa label --teacher $$t --videos data/sample/pool.parquet \
	    --out data/scores/$$t.parquet || exit 1; \
	done
	$(BIN)/w2svqa pairs ensemble --scores data/scores --videos data/sample/pool.parquet \
	  --out data/pairs/ensemble.parquet
	$(BIN)/w2svqa pairs synthetic --videos data/sample/pool.parquet --out data/pairs/synthetic.parquet

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
