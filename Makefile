# The one entry point. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the project with its test tools

.PHONY: run
run: $(STAMP) ## the whole stack + a 300-call demo campaign, live progress, summary (ARGS="--speed 30")
	$(BIN)/python -m devstack.demo $(ARGS)

.PHONY: up
up: $(STAMP) ## the local stack (Redis, simulator, receiver, workers, Flower) until Ctrl-C
	$(BIN)/callq up $(ARGS)

.PHONY: demo-fast
demo-fast: $(STAMP) ## the demo campaign at 60x speed, without Flower
	$(BIN)/python -m devstack.demo --speed 60 --no-flower $(ARGS)

.PHONY: test
test: $(STAMP) browser ## run the whole test suite (real Redis, simulator, Celery workers, Chromium)
	$(BIN)/pytest

.PHONY: browser
browser: ## Debian's chromium for the campaign page's browser test, installed once if missing
	@command -v chromium >/dev/null || { \
	  echo "== chromium: installing Debian's package (tests/system/test_campaign_page.py)"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; }

.PHONY: test-fast
test-fast: $(STAMP) ## the tests that start no worker process (tests/unit, tests/integration)
	$(BIN)/pytest tests/unit tests/integration

.PHONY: test-unit
test-unit: $(STAMP) ## the tests that need no Redis (tests/unit), a few seconds
	$(BIN)/pytest tests/unit

.PHONY: lint
lint: $(STAMP) ## ruff, mypy --strict and the layering (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: check
check: lint test ## lint, then the whole test suite

.PHONY: fmt
fmt: $(STAMP) ## format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: bench
bench: $(STAMP) ## benchmarks, ~10 min: producer, limiter, strictness vs fixed windows/limits/Celery rate_limit, worker memory, receiver, priority latency, live-call cap, many accounts (writes docs/benchmarks.md)
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python -m bench $(ARGS)

.PHONY: bench-million
bench-million: $(STAMP) ## one campaign of 1,000,000 calls, ~6 min: enqueue time, Redis memory, status, report RSS, feeder pass (prints Markdown)
	$(BIN)/python -m bench.million $(ARGS)

.PHONY: simulator
simulator: $(STAMP) ## run the Exotel simulator in the foreground on :8099
	$(BIN)/python -m simulator --port 8099

.PHONY: worker
worker: $(STAMP) ## run one worker (needs REDIS_URL and Exotel settings)
	$(BIN)/celery -A worker worker -Q calls --loglevel INFO

.PHONY: clean
clean: ## remove caches and local data (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .data build *.egg-info

.PHONY: chaos
chaos: $(STAMP) ## chaos run: 2,000 calls, workers SIGKILLed, Redis + receiver restarted, verdict vs the simulator (ARGS="--json-out f.json")
	$(BIN)/python -m chaos $(ARGS)

.PHONY: chaos-short
chaos-short: $(STAMP) ## the same chaos with 300 calls (about a minute), as tests/system/test_chaos.py runs it
	$(BIN)/python -m chaos --short $(ARGS)
