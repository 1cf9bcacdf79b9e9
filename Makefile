# The one entry point: every target bootstraps the virtualenv it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: setup test unit lint typecheck manifests demo bench bench-operator bench-monitor bench-ui e2e clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) ## create .venv and install mlgitops with its dev tools (pinned)

# The tests spend most of their time starting processes and waiting on them, so three xdist
# workers share the two cores. Whole files go to a worker (--dist loadfile: module-scoped servers
# are started once), in collection order (the long integration files first, not the files with
# the most tests: the single-test files would then come last, alone).
PYTEST_WORKERS ?= 3

test: setup lint typecheck ## lint, type-check, then every test but the e2e tier (make e2e)
	@$(PY) -m compileall -q -x '/\.venv' controller tests bench examples > /dev/null  # the tests start many processes
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check controller tests bench examples
	$(VENV)/bin/ruff format --check controller tests bench examples
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

manifests: setup ## regenerate manifests/crds from controller/api
	$(PY) -m controller.api.crd manifests/crds

demo: setup ## the main job on embedded defaults: a demo workspace, sync, promote, revert
	$(PY) -m examples.demo

bench: setup
	$(PY) bench/sync_scale.py

# The operator against the API emulator; CLUSTER=<kubeconfig> runs it on that real API server
# instead (it applies the CRDs there and creates, then deletes, namespace ml-bench).
bench-operator: setup
	$(PY) bench/operator_scale.py $(if $(CLUSTER),--kubeconfig "$(CLUSTER)")

# Drift monitoring against Evidently, batch scoring against a bare pyfunc predict (1,000,000 rows;
# ROWS=N for fewer). Evidently gets a venv of its own, $(EVIDENTLY_VENV), from exact pins: it does
# not import on the project's pandas 3, and is no dependency of mlgitops.
EVIDENTLY_VENV := bench/.venv-evidently
EVIDENTLY_STAMP := $(EVIDENTLY_VENV)/.installed-$(shell sha1sum bench/requirements-evidently.txt | cut -c1-12)

$(EVIDENTLY_STAMP): bench/requirements-evidently.txt | $(STAMP)
	@test -x $(EVIDENTLY_VENV)/bin/python || $(PYTHON) -m venv --without-pip $(EVIDENTLY_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(EVIDENTLY_VENV)/bin/python -r bench/requirements-evidently.txt
	@rm -f $(EVIDENTLY_VENV)/.installed-* && touch $@

# The dashboard's overview for 1,000 ModelDeployments in 3 environments (target: 300 ms).
bench-ui: setup
	$(PY) bench/ui.py

bench-monitor: setup $(EVIDENTLY_STAMP)
	$(PY) bench/monitor.py --evidently-python $(EVIDENTLY_VENV)/bin/python $(if $(ROWS),--rows $(ROWS))

e2e: setup ## the operator scenarios and the emulator's conformance on the cluster in $KUBECONFIG
	@test -n "$$KUBECONFIG" || { echo "make e2e: set KUBECONFIG to a cluster (see README)"; exit 2; }
	MLGITOPS_E2E_KUBECONFIG="$$KUBECONFIG" MLGITOPS_CONFORMANCE_KUBECONFIG="$$KUBECONFIG" \
	  $(PY) -m pytest -q tests/e2e tests/k8s/test_conformance.py

clean:
	rm -rf $(VENV) $(EVIDENTLY_VENV) .mlgitops .demo .pytest_cache .mypy_cache .ruff_cache
