# Fleet sync — every target bootstraps what it needs, so a fresh clone needs only
# `make run` or `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/fleet/v1/*.proto)
PYTEST_ARGS ?=
LOAD_ARGS ?=

.PHONY: help venv proto proto-check lint typecheck migrations-check test run bench load clean

help:
	@echo "make run    - serve on an embedded PostgreSQL (or FLEET_DATABASE_URL)"
	@echo "make test   - lint, types, buf lint, proto drift, migrations, pytest"
	@echo "make bench  - benchmarks, printed as ratios (bench/results.json)"
	@echo "make load   - a fleet against a real server on loopback, ~2 min (bench/load.json);"
	@echo "              LOAD_ARGS='--workers 2' or '--quick' (see python -m bench.load --help)"
	@echo "make proto  - regenerate generated/ from protos/"

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Regenerate the Python stubs; generated code is committed and never edited by hand.
proto: $(STAMP)
	rm -rf .proto-out && mkdir -p .proto-out
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=.proto-out --pyi_out=.proto-out \
		--grpc_python_out=.proto-out $(PROTOS)
	touch .proto-out/fleet/__init__.py .proto-out/fleet/v1/__init__.py
	rm -rf generated/fleet && mkdir -p generated && mv .proto-out/fleet generated/fleet && rm -rf .proto-out

# Fails when generated/ differs from what the protos produce.
proto-check: $(STAMP)
	rm -rf .proto-check && mkdir -p .proto-check
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=.proto-check --pyi_out=.proto-check \
		--grpc_python_out=.proto-check $(PROTOS)
	touch .proto-check/fleet/__init__.py .proto-check/fleet/v1/__init__.py
	diff -r -x __pycache__ .proto-check/fleet generated/fleet || \
		{ rm -rf .proto-check; echo "generated/ is stale: run 'make proto' and commit"; exit 1; }
	rm -rf .proto-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint

typecheck: $(STAMP)
	$(BIN)/mypy

# alembic upgrade head + alembic check + downgrade base + upgrade head on a fresh database.
migrations-check: $(STAMP)
	$(BIN)/python -m tests.support.migrations_check

test: lint typecheck proto-check migrations-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/fleet-server serve --bootstrap-admin-token

bench: $(STAMP)
	$(BIN)/python -m bench

# 300 live portals, 10 back-fills, an operator, then a ramp of concurrent streams; bars as PASS/FAIL.
load: $(STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

clean:
	rm -rf $(VENV) .proto-out .proto-check build *.egg-info
