# carechain: the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DIR ?= carechain-data
HOST ?= 127.0.0.1
PORT ?= 8700
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test lint typecheck layers unit browser-deps etcd bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## run: install, create the demo chain if none exists, start the node (API + explorer)
run: $(VENV)/.installed
	@if [ ! -f "$(DIR)/genesis.json" ]; then $(BIN)/carechain init --demo --dir "$(DIR)"; fi
	$(BIN)/carechain node --dir "$(DIR)" --host $(HOST) --port $(PORT)

## browser-deps: Debian's chromium for the Playwright tests (never `playwright install`)
browser-deps:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; \
	fi

## etcd: Debian's etcd-server for the consortium tests (ADR 0011)
etcd:
	@if ! command -v etcd >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq etcd-server >/dev/null; fi; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

layers: $(VENV)/.installed-test
	$(BIN)/lint-imports

unit: $(VENV)/.installed-test
	$(BIN)/pytest -q -n 2 -m "not browser" tests

## test: install test dependencies and run the whole suite (lint, types, layers, tests)
test: $(VENV)/.installed-test browser-deps etcd lint typecheck layers
	CARECHAIN_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q -n 2 tests

## soak: the reliability battery at full size (docs/RELIABILITY.md): 1000 fuzz examples per
## API operation, 200 revocation races, 2000 SIGKILL crashes (+30 of the HTTP node)
soak: $(VENV)/.installed-test
	CARECHAIN_FUZZ_EXAMPLES=1000 CARECHAIN_RACE_ROUNDS=200 CARECHAIN_CRASHES=2000 CARECHAIN_HTTP_CRASHES=30 $(BIN)/pytest -q -n 2 -s -p no:randomly tests/security tests/integration/test_backup.py

## bench: the benchmark (floors and committed tx/s)
bench: $(VENV)/.installed
	$(BIN)/carechain bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
