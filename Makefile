# Rundruf developer and CI entry points.
#
#   make demo         run the demo (ONCE=1 for a single pass)
#   make test         start PostgreSQL + Redis if needed, then run pytest
#                     (PYTEST_ARGS='-k auth -x' to pass arguments)
#   make lint         ruff check + ruff format --check + mypy (strict)
#   make coqui        only install the coqui-tts venv (cached outside the tree)
#   make services     only make sure PostgreSQL, Redis, lua5.4, espeak-ng, SIPp,
#                     baresip, Kamailio (with its presence and TLS modules) and chromium
#                     are there
#   make clean        remove the venv and local state
#
# Everything runs from .venv, which is created and (re)installed on demand.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed

PYTEST_ARGS ?=
# What mypy checks (strict, configured in pyproject.toml).
MYPY_TARGETS := api schema workers edge_agent swyx_jobservice
# coqui-tts with torch (about 7.6 GB) lives in its own venv, cached outside the work tree so
# that a fresh clone (CI) reuses it; reinstalled only when the [coqui] extra changes.
COQUI_VENV ?= $(HOME)/.cache/rundruf/venv-coqui
ONCE ?=

# Test services; override from the environment if yours live elsewhere.
RUNDRUF_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/rundruf_test
RUNDRUF_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# 1: tests fail (instead of skipping) when PostgreSQL or Redis is down.
RUNDRUF_REQUIRE_SERVICES ?= 1

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv coqui demo services test lint clean

help:
	@sed -n '3,11s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# Internal: the virtualenv with the project (editable) and its dev extra.
# Reinstalls only when pyproject.toml changes (or .venv is gone).
venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "python3-venv is missing; installing it with apt-get"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv; \
	fi
	@# A venv made without ensurepip has no pip: start over in that case.
	@if [ ! -x $(VENV)/bin/pip ]; then \
		rm -rf $(VENV); \
		echo "$(PYTHON) -m venv $(VENV)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $@

# The coqui-tts venv: the [coqui] extra of pyproject.toml, written out as a requirements file
# and compared with the one installed last.
coqui:
	@mkdir -p $(dir $(COQUI_VENV))
	@$(PYTHON) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["coqui"]))' > $(COQUI_VENV).wanted
	@if [ -x $(COQUI_VENV)/bin/python ] && cmp -s $(COQUI_VENV).wanted $(COQUI_VENV)/requirements.txt; then \
		echo "coqui: already installed ($(COQUI_VENV))"; \
	else \
		echo "coqui: installing coqui-tts and torch into $(COQUI_VENV) (a few minutes, once)"; \
		rm -rf $(COQUI_VENV); \
		$(PYTHON) -m venv $(COQUI_VENV); \
		$(COQUI_VENV)/bin/python -m pip install --quiet --upgrade pip; \
		$(COQUI_VENV)/bin/python -m pip install --quiet -r $(COQUI_VENV).wanted; \
		cp $(COQUI_VENV).wanted $(COQUI_VENV)/requirements.txt; \
	fi
	@rm -f $(COQUI_VENV).wanted

# The demo needs no external services; PBX=sip needs SIPp, PBX=kamailio Kamailio, SIPp
# and baresip (installed here if missing).
demo: venv
	$(if $(filter sip kamailio,$(PBX)),bash ops/ensure-services.sh,)
	$(VENV)/bin/rundruf demo $(if $(ONCE),--once,) $(if $(PBX),--pbx $(PBX),)

services:
	bash ops/ensure-services.sh

test: venv services coqui
	RUNDRUF_TEST_DATABASE_URL='$(RUNDRUF_TEST_DATABASE_URL)' \
	RUNDRUF_TEST_COQUI_PYTHON='$(COQUI_VENV)/bin/python' \
	RUNDRUF_TEST_REDIS_URL='$(RUNDRUF_TEST_REDIS_URL)' \
	RUNDRUF_REQUIRE_SERVICES='$(RUNDRUF_REQUIRE_SERVICES)' \
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(MYPY_TARGETS)

clean:
	rm -rf $(VENV) rundruf.db* .rundruf/
