# Roster: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test chaos lint typecheck bench clean server deploy worker serve synapse

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Synapse (the Matrix homeserver) in its own environment, for the REST connector's tests.
SYNAPSE_VENV ?= .venv-synapse
$(SYNAPSE_VENV)/.installed:
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install --quiet --upgrade pip
	$(SYNAPSE_VENV)/bin/pip install --quiet 'matrix-synapse==1.163.*'
	touch $(SYNAPSE_VENV)/.installed

synapse: $(SYNAPSE_VENV)/.installed

## Three local SCIM apps, a 200-person directory, a sync, an offboarding.
demo: $(STAMP)
	VENV=$(VENV) ./examples/demo/run.sh

## Every test. PostgreSQL tests run when ROSTER_TEST_POSTGRES_URL is set (.ci/run sets it).
test: $(STAMP) $(SYNAPSE_VENV)/.installed
	$(BIN)/pytest -q

## The chaos suite (excluded from `make test`): 20 syncs under injected faults, then a
## clean one; and kill -9 during apply. ROSTER_CHAOS_REPORT=file.json keeps the figures.
chaos: $(STAMP)
	$(BIN)/pytest -q -m chaos

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.plan
	$(BIN)/python -m bench.sync

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .demo build *.egg-info

# ---- Run it as a service (docs/service.md) -----------------------------------------------
# A local Prefect server; the commands below talk to it through PREFECT_API_URL.
SERVER_PORT ?= 4200
PREFECT_API_URL ?= http://127.0.0.1:$(SERVER_PORT)/api
# The server's own state (SQLite database, UI build); set
# PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://... to use PostgreSQL instead.
PREFECT_SERVER_HOME ?= $(CURDIR)/.prefect-server
# Clients (deploy, worker, serve) keep Prefect's state where the roster command does.
CLIENT_PREFECT_HOME ?= $(or $(ROSTER_HOME),$(HOME)/.roster)/prefect
# Seconds between scheduled full syncs and incremental syncs (deploy and serve).
ROSTER_SYNC_INTERVAL ?= 3600
ROSTER_INCREMENTAL_INTERVAL ?= 300
# How often a worker or `serve` asks the server for runs to start; Prefect's default is 10 s,
# which alone would take most of the offboarding latency budget (docs/benchmarks-offboard.md).
POLL_SECONDS ?= 1

# The server settings cli/prefect_env.py gives every Roster process (larger recorder batches:
# a third of the server CPU per task run; no telemetry).
SERVER_ENV := PREFECT_HOME=$(PREFECT_SERVER_HOME) \
	PREFECT_SERVER_ANALYTICS_ENABLED=false \
	PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=200 \
	PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE=50 \
	PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE=200 \
	PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE=50
CLIENT_ENV := PREFECT_HOME=$(CLIENT_PREFECT_HOME) PREFECT_API_URL=$(PREFECT_API_URL)

## A Prefect server on 127.0.0.1:$(SERVER_PORT) (UI and API); Ctrl-C stops it.
server: $(STAMP)
	mkdir -p $(PREFECT_SERVER_HOME)
	$(SERVER_ENV) $(BIN)/prefect server start --host 127.0.0.1 --port $(SERVER_PORT)

## Create the `roster` process work pool if missing, then deploy everything in prefect.yaml.
deploy: $(STAMP)
	mkdir -p $(CLIENT_PREFECT_HOME)
	$(CLIENT_ENV) $(BIN)/prefect work-pool inspect roster >/dev/null 2>&1 || \
		$(CLIENT_ENV) $(BIN)/prefect work-pool create roster --type process
	$(CLIENT_ENV) $(BIN)/prefect --no-prompt deploy --all
	if [ "$(ROSTER_SYNC_INTERVAL)" != 3600 ]; then \
		$(CLIENT_ENV) $(BIN)/prefect --no-prompt deployment schedule create sync/sync-all \
			--interval $(ROSTER_SYNC_INTERVAL) --replace -y; fi
	if [ "$(ROSTER_INCREMENTAL_INTERVAL)" != 300 ]; then \
		$(CLIENT_ENV) $(BIN)/prefect --no-prompt deployment schedule create sync/sync-incremental \
			--interval $(ROSTER_INCREMENTAL_INTERVAL) --replace -y; fi

## A worker that runs the deployed flows, each in a new process.
worker: $(STAMP)
	mkdir -p $(CLIENT_PREFECT_HOME)
	$(CLIENT_ENV) PREFECT_WORKER_QUERY_SECONDS=$(POLL_SECONDS) \
		$(BIN)/prefect worker start --pool roster --type process

## Or, instead of deploy + worker: serve every deployment from this one process.
serve: $(STAMP)
	$(CLIENT_ENV) $(BIN)/python -m deployments.serve \
		--interval $(ROSTER_SYNC_INTERVAL) --incremental-interval $(ROSTER_INCREMENTAL_INTERVAL) \
		--poll $(POLL_SECONDS)
