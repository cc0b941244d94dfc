# Retarget Suppressor: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==24.3.1
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned dependencies

lint: $(STAMP) ## ruff (lint + format check), the import layers (lint-imports), mypy on the source
	$(BIN)/ruff check suppressor tests bench faults
	$(BIN)/ruff format --check suppressor tests bench faults
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/mypy -p bench

tools: ## install the Debian tools the tests use (prometheus, promtool, kcat, kubectl) if missing
	deploy/local/tools

test: tools lint ## everything: lint, unit tests, integration tests on a real local Kafka broker
	$(BIN)/pytest -q

unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/pytest -q tests/unit

demo: $(STAMP) ## the main job: local broker, topics, worker, demo traffic, actions printed
	$(BIN)/python -m suppressor.entrypoints.demo

bench: $(STAMP) ## benchmarks; figures go to bench/out and BENCHMARKS.md
	$(BIN)/python -m bench

faults: $(STAMP) ## fault suite on a broker of its own (port 19792); figures to RELIABILITY.md (ARGS="--only hostile --scale small")
	$(BIN)/python -m faults $(ARGS)

schemas: $(STAMP) ## regenerate schemas/json from the pydantic models
	$(BIN)/suppressor schemas

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format suppressor tests bench faults
	$(BIN)/ruff check --fix suppressor tests bench faults

clean: ## stop the local broker and remove venv, caches and local data
	-deploy/local/kafka stop
	rm -rf $(VENV) .kafka var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install tools lint test unit demo bench faults schemas fmt clean
