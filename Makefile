# Each target sets itself up: a virtual environment in .venv, installed from pyproject.toml.
# `make run` installs what running needs; test, lint and bench add the `dev` extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

# Defaults for `make run` only; the environment overrides each of them.
INCIDENTS_HOST ?= 127.0.0.1
INCIDENTS_PORT ?= 8080
INCIDENTS_DATABASE_URL ?= sqlite:///var/incidents.db
INCIDENTS_API_TOKEN ?= dev-token
INCIDENTS_CONFIG ?= examples/config.yaml
RUN_ENV = INCIDENTS_HOST=$(INCIDENTS_HOST) INCIDENTS_PORT=$(INCIDENTS_PORT) \
	INCIDENTS_DATABASE_URL=$(INCIDENTS_DATABASE_URL) INCIDENTS_API_TOKEN=$(INCIDENTS_API_TOKEN) \
	INCIDENTS_CONFIG=$(INCIDENTS_CONFIG)

.PHONY: run test bench lint format worker notify-worker playbook-worker beat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The dev extra includes everything running needs, so it satisfies `make run` too.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	@mkdir -p var
	@echo "incidents: serving on http://$(INCIDENTS_HOST):$(INCIDENTS_PORT) (database $(INCIDENTS_DATABASE_URL))"
	@echo "Post the sample alert from another terminal:"
	@echo "  curl -sS -X POST http://$(INCIDENTS_HOST):$(INCIDENTS_PORT)/api/v1/alerts/alertmanager \\"
	@echo "       -H 'Authorization: Bearer $(INCIDENTS_API_TOKEN)' -H 'Content-Type: application/json' \\"
	@echo "       --data-binary @examples/alertmanager-webhook.json"
	@echo "  curl -sS -H 'Authorization: Bearer $(INCIDENTS_API_TOKEN)' http://$(INCIDENTS_HOST):$(INCIDENTS_PORT)/api/v1/alerts"
	$(RUN_ENV) $(BIN)/incidents serve

test: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check incidents workers tests alembic
	$(BIN)/ruff format --check incidents workers tests alembic
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix incidents workers tests alembic
	$(BIN)/ruff format incidents workers tests alembic

worker: $(RUN_STAMP)
	$(BIN)/incidents worker

notify-worker: $(RUN_STAMP)
	$(BIN)/incidents notify-worker

playbook-worker: $(RUN_STAMP)
	$(BIN)/incidents playbook-worker

beat: $(RUN_STAMP)
	$(BIN)/incidents beat

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
