# Fleet sync — every target bootstraps what it needs, so a fresh clone needs only
# `make run` or `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/fleet/v1/*.proto)
PYTEST_ARGS ?=
LOAD_ARGS ?=

.PHONY: help venv proto proto-check lint typecheck migrations-check test run bench load fuzz check-prometheus clean

help:
	@echo "make run    - serve on an embedded PostgreSQL (or FLEET_DATABASE_URL)"
	@echo "make test   - lint (ruff, buf, import layers), types, proto drift, migrations, pytest"
	@echo "make bench  - benchmarks, printed as ratios (bench/results.json)"
	@echo "make load   - a fleet against a real server on loopback, ~2 min (bench/load.json);"
	@echo "              LOAD_ARGS='--workers 2' or '--quick' (see python -m bench.load --help)"
	@echo "make fuzz   - fuzz every RPC of a real server for FUZZ_S seconds (default 300)"
	@echo "make proto  - regenerate generated/ from protos/"
	@echo "make check-prometheus - alert rule tests, and a real Prometheus scraping fleet-server --workers 2"

# The contract (generated/, distribution fleet-sync-contract) goes into the same pip run as the
# project that depends on it: named there as a local path, it is never looked up on an index.
# Editable, so what `make proto` writes under generated/fleet is what runs.
$(STAMP): pyproject.toml setup.py generated/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./generated -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# $(call contract,DIR) writes the contract package to DIR/fleet: the stubs and their typing
# stubs, a py.typed marker, and a copy of the .proto files (shipped in the package for grpcurl
# and protoc users; being generated, the drift check holds them equal to protos/).
define contract
	rm -rf $(1) && mkdir -p $(1)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(1) --pyi_out=$(1) \
		--grpc_python_out=$(1) $(PROTOS)
	touch $(1)/fleet/__init__.py $(1)/fleet/v1/__init__.py $(1)/fleet/py.typed
	cp $(PROTOS) $(1)/fleet/v1/
endef

# Regenerate generated/fleet; generated code is committed and never edited by hand.
proto: $(STAMP)
	$(call contract,.proto-out)
	rm -rf generated/fleet && mv .proto-out/fleet generated/fleet && rm -rf .proto-out

# Fails when generated/fleet differs from what the protos produce.
proto-check: $(STAMP)
	$(call contract,.proto-check)
	diff -r -x __pycache__ .proto-check/fleet generated/fleet || \
		{ rm -rf .proto-check; echo "generated/ is stale: run 'make proto' and commit"; exit 1; }
	rm -rf .proto-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# alembic upgrade head + alembic check + downgrade base + upgrade head on a fresh database.
migrations-check: $(STAMP)
	$(BIN)/python -m tests.support.migrations_check

test: lint typecheck proto-check migrations-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Prometheus metrics at http://127.0.0.1:9464/metrics (docs/operations.md, "Metrics and alerts").
run: $(STAMP)
	$(BIN)/fleet-server serve --bootstrap-admin-token --metrics-listen 127.0.0.1:9464

bench: $(STAMP)
	$(BIN)/python -m bench

# 300 live portals, 10 back-fills, an operator, then a ramp of concurrent streams; bars as PASS/FAIL.
load: $(STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

# Not part of `make test`: it installs Debian's prometheus package (promtool and prometheus) when
# missing, runs `promtool test rules` on docs/prometheus-rules.yml, then a real Prometheus scrapes
# fleet-server --workers 2 on loopback for a minute and a few series are checked by its HTTP API.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
check-prometheus: $(STAMP)
	command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	$(BIN)/python -m tests.support.prometheus_check

# Structure-aware fuzzing of every RPC against a real fleet-server process (tests/fuzz): prints
# calls per status; fails on INTERNAL/UNKNOWN, a crash, RSS over FUZZ_RSS_MB or a stray write.
# A 30 s run of the same harness is part of `make test` (FUZZ_SHORT_S changes it).
FUZZ_S ?= 300
fuzz: $(STAMP)
	FUZZ_S=$(FUZZ_S) $(BIN)/python -m tests.fuzz

clean:
	rm -rf $(VENV) .proto-out .proto-check build *.egg-info generated/build generated/*.egg-info
