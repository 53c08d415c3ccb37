# The README's two commands: `make quickstart` (main job on the embedded default) and `make test`.
#
# Both install the exact versions in requirements.lock (every package, pinned), so every machine and
# every day gets the same packages and the same bytes. `make lock` refreshes the lock from what the
# package index serves today; `make test-latest` runs the tests on that, unlocked, to see drift early.
SHELL := bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# pip is pinned too (the lock lists it, with setuptools, which torch needs at run time)
PIP_VERSION := 26.3
LATEST := .venv-latest

.PHONY: setup quickstart test lint lock test-latest

setup: $(VENV)/.installed

# A fresh venv whenever the lock or pyproject.toml changes: installing over an old one would keep
# packages the lock no longer lists. The last step checks that what is installed is the lock.
$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	@diff <(grep -v '^#' $(LOCK)) <($(BIN)/pip freeze --all --exclude-editable) \
		|| { echo "$(VENV) does not match $(LOCK) (lines above); run 'make lock'?"; exit 1; }
	touch $@

# The main job on the embedded default: builds the sample corpus when missing, then three rounds of
# weak-to-strong training; prints the results table and logs the run to MLflow (mlruns/).
quickstart: setup
	$(BIN)/w2svqa run experiments/quickstart.yaml --output_dir runs/quickstart

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# What an unlocked install gets today: the newest versions that pyproject.toml allows.
$(LATEST)/.installed: pyproject.toml
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet pip==$(PIP_VERSION)
	$(LATEST)/bin/pip install --quiet -e '.[dev]'
	touch $@

# Rewrite requirements.lock with today's newest versions; then run `make test` and commit the lock.
lock:
	rm -rf $(LATEST)
	$(MAKE) $(LATEST)/.installed
	{ echo "# Every package w2svqa installs, pinned: written by 'make lock' (Python 3.11, Linux x86_64)."; \
	  $(LATEST)/bin/pip freeze --all --exclude-editable; } > $(LOCK)

# Not in CI: the tests on today's newest versions, and how they differ from the lock.
test-latest:
	rm -rf $(LATEST)
	$(MAKE) $(LATEST)/.installed
	-diff <(grep -v '^#' $(LOCK)) <($(LATEST)/bin/pip freeze --all --exclude-editable)
	$(LATEST)/bin/pytest
