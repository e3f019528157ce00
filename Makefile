# Entry points. `make generate` and `make test` each set up what they need on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt app/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: help venv generate check lint test clean rollout-check

help:
	@echo "make generate   set up .venv and write templates/*.json"
	@echo "make test       set up .venv and run the whole test suite"
	@echo "make check      fail if templates/ is stale"
	@echo "make lint       cfn-lint over templates/, ruff over the Python"

venv: $(STAMP)

$(STAMP): requirements-dev.txt app/requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found. Install it: apt-get install -y python3.11 python3.11-venv (or set PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) must be Python 3.11 with venv and ensurepip. Install: apt-get install -y python3.11 python3.11-venv"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

generate: $(STAMP)
	$(PY) generate.py

check: $(STAMP)
	$(PY) generate.py --check

lint: $(STAMP)
	$(VENV)/bin/cfn-lint
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

rollout-check: $(STAMP)
	$(PY) -m tools.rollout

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
