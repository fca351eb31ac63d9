# Two commands: `make demo` (the main job on the digits demo set) and `make test` (the whole suite).
# Each creates .venv on its own. torch and torchvision come from pip (not uv/poetry), pinned in pyproject.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME := $(CURDIR)/.demo/home

.PHONY: demo test lint reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/modelbuilder demo-data digits .demo/digits
	MODELBUILDER_HOME=$(DEMO_HOME) $(BIN)/modelbuilder train --data .demo/digits --epochs 6 --no-hflip --output demo-output
	$(BIN)/python demo-output/Digits.ConsoleApp/main.py

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf .demo demo-output

reliability: $(VENV)/.dev
	$(BIN)/python tools/reliability.py
