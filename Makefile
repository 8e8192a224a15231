# The two commands of ecgstream: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint setup system venv down clean

demo: setup
	$(VENV)/bin/ecgstream demo

test: setup lint
	$(PY) -m pytest

# skips the slow soak/chaos runs; every integration path is still covered once
test-fast: setup lint
	$(PY) -m pytest -m "not slow"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

setup: system venv

system:
	@scripts/ensure-system.sh

venv:
	@scripts/ensure-venv.sh

down:
	$(VENV)/bin/ecgstream cluster down

clean: down
	rm -rf .ecgstream
