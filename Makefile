# The two commands of ecgstream: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all lint setup system browser venv assets down clean

demo: setup
	$(VENV)/bin/ecgstream demo

# every test but the long repetitions marked `slow`; every integration path is covered once
test: setup browser lint
	$(PY) -m pytest -m "not slow"

# everything, the slow repetitions too (whole-DS1 parity, long soak and chaos runs)
test-all: setup browser lint
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

setup: system venv assets

system:
	@scripts/ensure-system.sh

# the real browser (Debian's chromium) that the central station's tests drive
browser:
	@scripts/ensure-system.sh browser

assets:
	@scripts/ensure-station-assets.sh

venv:
	@scripts/ensure-venv.sh

down:
	$(VENV)/bin/ecgstream cluster down

clean: down
	rm -rf .ecgstream
