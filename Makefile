# citus-cluster: `make up` stands the cluster up, `make down` removes it, `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STACK ?= dev
# Debian's interpreter where present: the venv must be usable by the `postgres` user the tests run servers as.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
STATE_DIR := $(CURDIR)/.pulumi-state
PULUMI := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" pulumi
PYTEST_ARGS ?=

.PHONY: help up down preview test render lint preflight backend clean

help:
	@echo "make up       create/update the '$(STACK)' stack: the whole cluster on the local Docker"
	@echo "make down     destroy the '$(STACK)' stack (volumes kept only if storage.retainOnDestroy)"
	@echo "make preview  show what 'make up' would change"
	@echo "make test     unit + real-process tests (no Docker needed)"
	@echo "make render   write the rendered files for '$(STACK)' into build/rendered/$(STACK)"

$(VENV)/.installed-run: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

# Fail at once, naming every missing piece, before anything is created or downloaded.
preflight:
	@missing=(); \
	command -v pulumi >/dev/null 2>&1 || missing+=("the Pulumi CLI ('pulumi' is not on PATH; install it from Pulumi's installation docs)"); \
	if ! command -v docker >/dev/null 2>&1; then \
	  missing+=("the Docker CLI ('docker' is not on PATH)"); \
	elif ! timeout 15 docker info >/dev/null 2>&1; then \
	  missing+=("a running Docker daemon ('docker info' got no answer from $${DOCKER_HOST:-the local socket}; start Docker)"); \
	fi; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "make: cannot deploy, missing:" >&2; \
	  for m in "$${missing[@]}"; do echo "  - $$m" >&2; done; \
	  exit 1; \
	fi

# Local file backend unless the user is already logged in somewhere; a generated passphrase file keeps the
# stack's secrets encrypted without a prompt (set PULUMI_CONFIG_PASSPHRASE[_FILE] to use your own).
backend: preflight $(VENV)/.installed-run
	@if ! pulumi whoami >/dev/null 2>&1; then mkdir -p $(STATE_DIR) && pulumi login --local "file://$(STATE_DIR)" >/dev/null; fi
	@if [ -z "$${PULUMI_CONFIG_PASSPHRASE:-}$${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ] && [ ! -f $(STATE_DIR)/passphrase ]; then \
	  mkdir -p $(STATE_DIR) && umask 077 && head -c 24 /dev/urandom | base64 > $(STATE_DIR)/passphrase; fi
	@$(call with_passphrase) $(PULUMI) stack select --create $(STACK) >/dev/null

with_passphrase = $(if $(PULUMI_CONFIG_PASSPHRASE)$(PULUMI_CONFIG_PASSPHRASE_FILE),,PULUMI_CONFIG_PASSPHRASE_FILE=$(STATE_DIR)/passphrase)

# After the cluster: its CA where the DSNs expect it, and a libpq service file (passwords in a 0600 file beside it).
up: backend
	$(call with_passphrase) $(PULUMI) up --yes --stack $(STACK)
	$(call with_passphrase) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m cluster ca --stack $(STACK) \
	  --service-file build/tls/$(STACK)/pg_service.conf

down: backend
	$(call with_passphrase) $(PULUMI) destroy --yes --stack $(STACK)

preview: backend
	$(call with_passphrase) $(PULUMI) preview --stack $(STACK)

render: $(VENV)/.installed-run
	$(VENV)/bin/python -m cluster render --stack $(STACK) --out build/rendered/$(STACK)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check cluster tests benchmarks __main__.py

test: $(VENV)/.installed-dev lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

clean:
	rm -rf build .pytest_cache .ruff_cache
