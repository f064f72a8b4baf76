# One way to run things: the README, CI (.ci/run) and you call these targets.
VENV ?= .venv
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Usage tracking of every library, off (pipelines/__init__.py sets the same defaults).
export DO_NOT_TRACK ?= true
export MLFLOW_DISABLE_TELEMETRY ?= true
export BENTOML_DO_NOT_TRACK ?= true
export GX_ANALYTICS_ENABLED ?= false
export DVC_NO_ANALYTICS ?= 1

.DEFAULT_GOAL := help
.PHONY: help install orchestrators lifecycle test lint mlflow-ui stack-up stack-down benchmarks cbpe-nannyml monitor-ui clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# pip installs uv (the version the lock pins), and uv installs the lock: the same versions as
# `pip install -c requirements.lock` (checked with `uv pip freeze`), in seconds rather than minutes.
# --compile-bytecode writes the .pyc files at install, as pip does and uv does not by default:
# where PYTHONDONTWRITEBYTECODE is set (this machine sets it), no import would ever write them,
# and every process (each stage, each test's subprocess) compiled MLflow, Evidently, Great
# Expectations and scikit-learn from source again: a train stage spent 16 of its 65 s there
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements.lock)
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VENV)/bin/python -c requirements.lock -e '.[dev]'
	touch $@

# The page template `dvc plots show` fills (.dvc/config names it): Vega inlined, no CDN
.dvc/plots_template.html: $(VENV)/.installed lifecycle/plots_page.py
	python -m lifecycle.plots_page

install: $(VENV)/.installed .dvc/plots_template.html ## Create .venv and install the pinned stack

lifecycle: install ## Install, then run the whole lifecycle (dvc repro) on the default data
	dvc repro

# $(call debian_packages,TEST,PACKAGES,WHAT,NEEDED BY): nothing when the shell condition TEST
# holds; else apt-get installs the Debian PACKAGES (as root), or one line says what to install.
# No commas inside the arguments: $(call) splits on them.
define debian_packages
@if $(1); then :; \
elif ! command -v apt-get >/dev/null; then \
  echo "make $@: apt-get is unavailable; install $(3) yourself (for $(4))" >&2; \
elif [ "$$(id -u)" != 0 ]; then \
  echo "make $@: installing $(3) for $(4) needs root: sudo apt-get install -y $(2)" >&2; \
else \
  echo "make $@: installing $(3) (Debian packages) for $(4)"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); \
fi
endef

# tests/browser drives Debian's Chromium and chromedriver: `make install` installs them when missing
install: chromium
.PHONY: chromium
chromium:
	$(call debian_packages,[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ],chromium chromium-driver,Chromium and chromedriver at /usr/bin,tests/browser)

# The production stack (lifecycle stack up) runs Debian's PostgreSQL: `make install` installs it when missing
install: postgresql
.PHONY: postgresql
postgresql:
	$(call debian_packages,command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1,postgresql,PostgreSQL (initdb and pg_ctl),make stack-up)

# Each orchestrator in its own virtual environment (their pins conflict with the project's):
# .venv-ENGINE from lifecycle/orchestrators/requirements/ENGINE.txt, built with uv (its cache
# makes a rebuild take seconds). Their tasks call the project's .venv by subprocess.
ORCHESTRATORS := airflow prefect dagster kubeflow stepfunctions
SFN_NPM := lifecycle/orchestrators/requirements/stepfunctions-npm
orchestrators: $(ORCHESTRATORS:%=.venv-%/.installed) $(SFN_NPM)/node_modules/.installed ## Build the orchestrators' own environments

# asl-validator (npm, pinned by its package-lock.json) checks the exported Step Functions ASL
$(SFN_NPM)/node_modules/.installed: $(SFN_NPM)/package-lock.json
	npm ci --prefix $(SFN_NPM) --no-audit --no-fund --loglevel=error
	touch $@

.venv-%/.installed: lifecycle/orchestrators/requirements/%.txt $(VENV)/.installed
	rm -rf .venv-$*
	$(VENV)/bin/uv venv --quiet --python $(PYTHON) .venv-$*
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python .venv-$*/bin/python -r $<
	touch $@

# The suite's slow tests mostly wait (servers, subprocesses): more workers than cores pays.
TEST_WORKERS ?= 3
test: install orchestrators ## Run the whole test suite, the slow end-to-end tests included
	pytest -n $(TEST_WORKERS) --dist loadfile

lint: install ## Static checks: ruff, and the layers (lint-imports)
	ruff check .
	lint-imports

mlflow-ui: install ## Open the MLflow UI on http://127.0.0.1:5000
	@echo 'The lifecycle runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning'
	@echo '(MLflow 3 opens experiments on its GenAI page until "Model training" is chosen in the sidebar once)'
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# State, logs and secrets in .stack/ (docs/stack.md); then: eval "$$(lifecycle stack env)"
stack-up: install ## Start PostgreSQL, S3 (moto) and an MLflow server on both; DVC remote "stack"
	lifecycle stack up

stack-down: install ## Stop the stack (moto's objects are lost; PostgreSQL's data stays)
	lifecycle stack down

benchmarks: install ## Run the benchmarks; results go to benchmarks/results/
	python benchmarks/bench_data.py

# The serving and rollout benchmarks load the service with wrk: `make wrk` installs it
.PHONY: wrk
wrk:
	$(call debian_packages,command -v wrk >/dev/null,wrk,wrk,benchmarks/bench_serving.py and bench_rollout.py)

cbpe-nannyml: install ## Check our CBPE against NannyML's (its own venv, .venv-nannyml)
	bash benchmarks/nannyml_env.sh
	.venv-nannyml/bin/python benchmarks/cbpe_nannyml.py

monitor-ui: install ## Open the Evidently dashboard of the monitor's windows on http://127.0.0.1:8000
	evidently ui --workspace reports/monitor/workspace --host 127.0.0.1 --port 8000

clean: ## Remove lifecycle products (data, artifacts, reports, MLflow store); keeps .venv
	rm -rf data artifacts reports mlflow.db mlruns mlartifacts dvc.lock
