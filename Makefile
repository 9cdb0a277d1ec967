# Quick start: `make demo` runs the main job, `make test` the test suite. Each creates (or
# reuses) the virtual environment .venv in this folder and installs the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint format bench clean-venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	@# The eval extra's torchattacks without its pin of an old requests (its other needs,
	@# torch, torchvision, numpy, scipy, tqdm, are installed above).
	$(BIN)/python -m pip install --quiet --progress-bar off --no-deps 'torchattacks>=3.5.1'
	@# The sweep extra: W&B's engine `sweeps` without its pin of numpy<2, its other needs
	@# with theirs.
	$(BIN)/python -m pip install --quiet --progress-bar off 'scikit-learn>=1.0' 'jsonschema>=3.2' 'jsonref>=1.0'
	$(BIN)/python -m pip install --quiet --progress-bar off --no-deps 'sweeps>=0.3.0'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intriguing train experiment=demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-venv:
	rm -rf $(VENV)
