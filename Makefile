# The two commands a new machine needs: `make demo` and `make test`.
# Each creates .venv with pip (nothing but Python is assumed) and installs what it needs.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test lint typecheck unit install install-dev clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[bench]"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/revamper bench

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests examples benchmarks
	$(PY) -m ruff format --check src tests examples benchmarks
	$(VENV)/bin/lint-imports --no-cache

# mypy's files (pyproject.toml): src/revamper and benchmarks.
typecheck: $(VENV)/.installed-dev
	$(PY) -m mypy

unit: $(VENV)/.installed-dev
	$(PY) -m pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis src/*.egg-info
