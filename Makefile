# carerisk: two commands for a fresh machine.
#   make demo   set up .venv and run the whole job on the embedded defaults
#   make test   set up .venv and run lint, type checks and the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export PYSPARK_PYTHON := $(abspath $(BIN))/python

.PHONY: demo test check docs lint typecheck pytest lock bench bento sbom load fuzz clean system-deps

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines)
# Python would otherwise compile every module it imports from source in every process, about
# 13 CPU seconds for each CLI call, server and test worker.
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python --require-hashes --compile-bytecode requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q carerisk codelists importers features training models evaluation serving referrals synthetic
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/carerisk demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy carerisk codelists importers features training models evaluation serving referrals synthetic bench

# Debian packages the tests drive for real: Chromium (reports, pages), PostgreSQL (MLflow
# server test), Java 17 (Spark). Installed only when missing; needs root and the Debian mirror.
SYSTEM_PACKAGES := chromium postgresql openjdk-17-jre-headless
system-deps:
	@need=""; \
	test -x /usr/bin/chromium || need="$$need chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v java >/dev/null || need="$$need openjdk-17-jre-headless"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	fi

# Two workers, whole files each (a module's shared county or server stays in one worker); each
# worker builds its own trained home and live service, so audit counts never mix.
pytest: $(STAMP) system-deps
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck pytest

# The developer's loop: lint, types and the tests that start no server, Spark or browser and are
# not marked slow (CONTRIBUTING.md).
FAST_TESTS := not slow and not server and not spark and not browser
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy carerisk codelists importers features training models evaluation serving referrals synthetic bench
	$(BIN)/pytest -n 2 --dist loadfile -m "$(FAST_TESTS)" -q

# The documentation site on http://127.0.0.1:8000 (make test builds it with --strict).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

# Re-resolve the lock file after changing a pin in pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# A deployable Bento of the scoring service (bentofile.yaml), in this home's BentoML store.
bento: $(STAMP)
	BENTOML_HOME=$(abspath .carerisk/bentoml) $(BIN)/bentoml build .

# CycloneDX bill of materials of the locked environment (audit it where a vulnerability
# database can be reached: see docs/security.md).
sbom: $(STAMP)
	$(BIN)/cyclonedx-py environment $(BIN)/python --of JSON -o sbom.cdx.json
	@echo "wrote sbom.cdx.json"

# The 5-minute load test against a real server on loopback (a short version runs in make test).
LOAD_HOME ?= .carerisk/load-home
load: $(STAMP)
	test -f $(LOAD_HOME)/store.duckdb || $(BIN)/carerisk --home $(LOAD_HOME) demo --no-serve --people 4000 --config tests/training-small.toml
	$(BIN)/python -m bench.load_test --home $(LOAD_HOME) --seconds 300 --rate 20

# The long schemathesis run (make test runs 15 examples per operation).
fuzz: $(STAMP)
	CARERISK_FUZZ_EXAMPLES=500 $(BIN)/pytest tests/ops/test_fuzz.py

clean:
	rm -rf $(VENV) .carerisk .pytest_cache .mypy_cache .ruff_cache build/site
