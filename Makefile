# docloop: `make demo` and `make test` set everything up themselves (see scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.docloop-installed
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast e2e lint format compile component bench bench-efficacy lock clean images

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

demo: $(STAMP)
	$(VENV)/bin/docloop demo

# As root, setup.sh installs PostgreSQL, so the store tests must run against it (not skip).
REQUIRE_POSTGRES := $(shell [ "$$(id -u)" = 0 ] && echo 1 || echo 0)

test: $(STAMP)
	DOCLOOP_REQUIRE_POSTGRES=$${DOCLOOP_REQUIRE_POSTGRES:-$(REQUIRE_POSTGRES)} $(PY) -m pytest -q

test-fast: $(STAMP)
	DOCLOOP_REQUIRE_POSTGRES=$${DOCLOOP_REQUIRE_POSTGRES:-$(REQUIRE_POSTGRES)} $(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

# Needs a cluster with KServe and KFP (see tests/e2e/test_canary_e2e.py for the variables).
e2e: $(STAMP)
	$(PY) -m pytest -q -m e2e tests/e2e

# lint-imports checks the import boundaries written in pyproject.toml ([tool.importlinter]);
# check_docs.py that docs/architecture.md repeats no module docstring.
lint: $(STAMP)
	$(PY) -m ruff check src tests components pipelines bench scripts
	$(PY) -m ruff format --check src tests components pipelines bench scripts
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(PY) scripts/check_docs.py

format: $(STAMP)
	$(PY) -m ruff check --fix src tests components pipelines bench scripts
	$(PY) -m ruff format src tests components pipelines bench scripts

compile: $(STAMP)
	$(VENV)/bin/docloop compile

# A new component: components/<NAME>/, its step src/docloop/steps/<NAME>.py and a kfp.local test.
component: $(STAMP)
	@test -n "$(NAME)" || { echo "make component: name it, e.g. make component NAME=redact_pages" >&2; exit 2; }
	$(PY) -m components.scaffold $(NAME)

# SROIE=<the data/ folder of zzzDavid/ICDAR-2019-SROIE> adds the real-receipt benchmark (skipped
# without it); the full-size run is `python -m bench.real_documents --sroie DIR`.
bench: $(STAMP)
	$(PY) -m pip install -q -c requirements.lock -e ".[bench]"
	DOCLOOP_SROIE_DIR=$${DOCLOOP_SROIE_DIR:-$(SROIE)} $(PY) -m bench.suite

# The retraining-strategy benchmark at its default size (28 min on 2 CPU cores, 23 once cached);
# rewrites the efficacy section of docs/benchmarks.md.
bench-efficacy: $(STAMP)
	$(PY) -m bench.retrain_strategies --write-doc

# Container images (images/<name>/Dockerfile), tagged $(REGISTRY)/docloop-<name>:<package version>:
# the tags components/images.py compiles into the pipelines. DOCLOOP_IMAGE_REGISTRY (or REGISTRY=)
# names a mirror. Needs a Docker engine; no venv.
REGISTRY ?= $(or $(DOCLOOP_IMAGE_REGISTRY),ghcr.io/docloop)
VERSION := $(shell grep -m1 '^version = ' pyproject.toml | cut -d'"' -f2)

images:
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine answers ('docker info' failed): start one (or point DOCKER_HOST at one) and run 'make images' again" >&2; exit 1; }
	docker build --build-arg VERSION=$(VERSION) -f images/base/Dockerfile -t $(REGISTRY)/docloop-base:$(VERSION) .
	docker build --build-arg VERSION=$(VERSION) -f images/train/Dockerfile -t $(REGISTRY)/docloop-train:$(VERSION) .
	docker build --build-arg VERSION=$(VERSION) -f images/serve/Dockerfile -t $(REGISTRY)/docloop-serve:$(VERSION) .

lock: $(STAMP)
	{ head -3 requirements.lock; $(PY) -m pip freeze --exclude-editable | grep -v -E '^(torch|docloop)=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf .docloop demo-report bench/out .pytest_cache .mypy_cache .ruff_cache
