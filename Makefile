# The one entry point: every target bootstraps the virtualenv it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: setup test unit lint typecheck manifests demo bench bench-operator e2e clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) ## create .venv and install mlgitops with its dev tools (pinned)

test: setup lint typecheck ## lint, type-check, then every test but the e2e tier (make e2e)
	@$(PY) -m compileall -q controller tests bench examples > /dev/null  # the tests start many processes
	$(PY) -m pytest -q

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

e2e: setup ## the operator scenarios and the emulator's conformance on the cluster in $KUBECONFIG
	@test -n "$$KUBECONFIG" || { echo "make e2e: set KUBECONFIG to a cluster (see README)"; exit 2; }
	MLGITOPS_E2E_KUBECONFIG="$$KUBECONFIG" MLGITOPS_CONFORMANCE_KUBECONFIG="$$KUBECONFIG" \
	  $(PY) -m pytest -q tests/e2e tests/k8s/test_conformance.py

clean:
	rm -rf $(VENV) .mlgitops .demo .pytest_cache .mypy_cache .ruff_cache
