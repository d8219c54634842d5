# ys1000 — the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed by `make setup`: the Python venv (.venv/), restic and the
# local Kubernetes control plane (bin/), built from the package registries only.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RESTIC_VERSION := v0.18.1
TOXIPROXY_VERSION := v2.5.0
SANDBOX_DIR ?= $(CURDIR)/.sandbox

include tools/controlplane/Makefile.inc

SYSTEM_STAMP := .venv/.system-packages

.PHONY: setup system venv restic toxiproxy minio demo demo-ci lint test test-fast bench sandbox-up sandbox-down clean

setup: system venv restic toxiproxy minio controlplane

# Debian packages (database servers, Redis, Chromium, GNU time): installed once per machine.
system: $(SYSTEM_STAMP)

$(SYSTEM_STAMP): scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	@mkdir -p $(dir $@) && touch $@

venv: $(VENV)/.installed

# requirements.lock pins the whole resolved set (apache-airflow has many loose transitive
# dependencies); pyproject.toml pins the top level. Two editable packages: the product (ys1000,
# plugins/) and the development-only one (ys1000-dev, dev/: sandbox, Airflow process launcher,
# demo), which `pip install .` of the product never brings.
$(VENV)/.installed: pyproject.toml dev/pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]' -e ./dev
	touch $@

restic: bin/restic

# restic from the Go module proxy (ask for the exact version: @latest resolves to an old one).
bin/restic:
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin GOFLAGS=-buildvcs=false go install github.com/restic/restic/cmd/restic@$(RESTIC_VERSION)

minio: bin/minio

# The MinIO server (the S3 the sandbox, the tests, the demo and the benchmarks use; the same
# server docker-compose.yaml runs), from the Go module proxy: about 5 min of CPU cold, once.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
bin/minio:
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin GOFLAGS=-buildvcs=false go install github.com/minio/minio@$(MINIO_VERSION)

toxiproxy: bin/toxiproxy-server

# The toxiproxy server (a TCP fault proxy: the S3 fault tests put it in front of MinIO), from the
# Go module proxy. `go install` names the binary after its package directory (`server`), so it
# is installed into a scratch directory and renamed.
bin/toxiproxy-server:
	@mkdir -p bin
	rm -rf bin/.toxiproxy-build
	GOBIN=$(CURDIR)/bin/.toxiproxy-build GOFLAGS=-buildvcs=false go install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv bin/.toxiproxy-build/server $@
	rmdir bin/.toxiproxy-build

demo: setup
	$(PY) -m ys1000_dev.demo --dir $(SANDBOX_DIR)

# The demo without waiting for Ctrl-C: what the test suite and CI run.
demo-ci: setup
	$(PY) -m ys1000_dev.demo --dir $(SANDBOX_DIR) --no-wait

# Lint first (configured in pyproject.toml): ruff's rules, ruff's formatting, mypy on the engine.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Two xdist workers, whole modules each, longest first (tests/conftest.py orders them): the
# end-to-end modules mostly wait on Airflow and throttled movers, so two of them overlap on two
# cores. Each worker has its own sandbox, S3 and session directory. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup lint
	YS1000_REQUIRE_SANDBOX=1 PATH=$(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest \
		$(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

# Unit tests only (no control plane needed).
test-fast: venv restic minio  # the repository and volume tests use MinIO and restic, not a cluster
	PATH=$(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -m 'not cluster and not slow' $(PYTEST_ARGS)

# BENCH="dagparse resources volumes" runs only those (default: all, see benchmarks/__main__.py)
bench: setup
	PATH=$(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m benchmarks $(BENCH)

sandbox-up: setup
	$(VENV)/bin/ys1000-dev sandbox up --dir $(SANDBOX_DIR)

sandbox-down:
	$(VENV)/bin/ys1000-dev sandbox down --dir $(SANDBOX_DIR)

clean:
	-test -x $(VENV)/bin/ys1000-dev && $(VENV)/bin/ys1000-dev sandbox down --dir $(SANDBOX_DIR)
	rm -rf $(VENV) bin .sandbox .pytest_cache .mypy_cache .ruff_cache plugins/*.egg-info dev/*.egg-info
