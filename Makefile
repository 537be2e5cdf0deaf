# chainlake — two commands do everything on a fresh machine: `make demo` and `make test`.
# Every step is idempotent: it is skipped when its stamp file is newer than its inputs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
ANVIL_VERSION := 1.7.1
ANVIL := .tools/anvil/node_modules/.bin/anvil
CONTRACTS := $(wildcard chainlake/devnet/contracts/*.vy)
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: setup demo test bench bench-pit bench-rl bench-follow dev clean

setup: $(VENV)/.installed $(ANVIL) build/contracts/.compiled $(DAGSTER_HOME)/dagster.yaml

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

# requirements.lock pins every transitive version (uv pip compile pyproject.toml --extra test).
$(VENV)/.installed: $(BIN)/uv requirements.lock pyproject.toml
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(ANVIL):
	mkdir -p .tools/anvil
	npm install --no-save --no-audit --no-fund --loglevel=error --prefix .tools/anvil \
		@foundry-rs/anvil-linux-amd64@$(ANVIL_VERSION)
	$(ANVIL) --version | head -1

build/contracts/.compiled: $(VENV)/.installed $(CONTRACTS) chainlake/devnet/contracts.py
	$(BIN)/python -m chainlake.devnet.contracts
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

demo: setup
	$(BIN)/chainlake demo

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup
	$(BIN)/python bench/ingest.py

bench-pit: setup
	$(BIN)/python bench/pit.py

bench-rl: setup
	$(BIN)/python bench/rl.py

bench-follow: setup
	$(BIN)/python bench/follow.py

dev: setup
	$(BIN)/dagster dev -h 127.0.0.1 -m dagster_project.definitions

clean:
	rm -rf $(VENV) .tools build $(DAGSTER_HOME) warehouse/lake warehouse/chainlake.duckdb
