# agent-monitoring — two commands: `make run` (local stack on loopback) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pytest arguments, e.g. `make test PYTEST_ARGS="-k exporter"`
PYTEST_ARGS ?=

.PHONY: help run test lint bench system-deps venv clean

help:
	@echo "make run    - start the local stack on 127.0.0.1 (Ctrl-C stops it)"
	@echo "make test   - set everything up, lint (ruff) and run the whole test suite"
	@echo "make bench  - benchmarks against node_exporter / a bare aiohttp handler"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

system-deps:
	@scripts/ensure-system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) system-deps lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

run: $(STAMP) system-deps
	$(PY) -m agentmon.devstack $(RUN_ARGS)

bench: $(STAMP) system-deps
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run build *.egg-info
