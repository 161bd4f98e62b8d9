# Run `make` for the list of targets. Everything installs from uv.lock into .venv.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 4200
PROFILE ?= sqlite
DEMO_DAYS ?= 14
DEMO_EVENTS ?= 20000
PYTEST_ARGS ?=

export PREFECT_API_URL ?= http://127.0.0.1:$(PORT)/api
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11

.PHONY: help setup lint test test-fast bench-smoke up down deploy demo bench load clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# Compiled bytecode: a flow run imports prefect and dbt; without .pyc files that costs about
# twice the CPU (uv installs without them unless asked). src/ is installed editable, so it is
# compiled here too.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	$(BIN)/python -m compileall -q src flows
	@touch $@

setup: $(VENV)/.synced ## Create .venv from uv.lock (idempotent)

lint: setup ## ruff, format check, the package's layers (import-linter) and the core's types (mypy)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

test: setup lint ## Everything that proves behaviour: unit, dbt, harness, end to end (CI runs this)
	$(BIN)/clickstream stores check
	$(BIN)/pytest -n 2 --durations=25 -m "not bench" $(PYTEST_ARGS)

test-fast: setup ## Unit tests only: no Prefect server, no worker, no dbt build (seconds)
	$(BIN)/pytest -m "not e2e and not browser and not postgres and not harness and not slow and not bench" $(PYTEST_ARGS)

bench-smoke: setup ## `make bench` on a tiny grid: the benchmark still runs end to end (CI runs it)
	$(BIN)/pytest -m bench $(PYTEST_ARGS)

up: setup ## Start a local Prefect server + worker(s) (PROFILE=sqlite|postgres, PORT=4200)
	$(BIN)/clickstream stack up --port $(PORT) --profile $(PROFILE)

down: ## Stop the local stack by PID
	@if [ -x $(BIN)/clickstream ]; then $(BIN)/clickstream stack down; else echo "nothing to stop"; fi

deploy: setup ## Bootstrap the server (pool, dbt-global) and `prefect deploy --all`
	$(BIN)/clickstream stores check
	$(BIN)/clickstream bootstrap
	$(BIN)/prefect --no-prompt deploy --all

demo: setup ## The main job on embedded defaults: stack, data, deploy, backfill, grid
	@$(BIN)/clickstream stack down >/dev/null
	$(MAKE) --no-print-directory up
	$(MAKE) --no-print-directory deploy
	$(BIN)/python -m clickstream.local.demo --days $(DEMO_DAYS) --events-per-day $(DEMO_EVENTS)

bench: setup ## Benchmarks (makespan, overhead, planner, incremental, modes, load) -> bench/RESULTS.md
	$(BIN)/python -m bench.run

load: setup ## Load run: 8 stores x 30 days through one backfill -> its section of bench/RESULTS.md
	$(BIN)/python -m bench.load

clean: down ## Remove generated state (.clickstream/, dbt target)
	rm -rf .clickstream dbt/target dbt/logs
