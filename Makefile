# The documented interface of the project's offline tooling. Every target sets up what it
# needs: on a fresh machine the first `make` creates .venv and installs the pinned
# requirements (about a minute), later runs reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
STACK ?= dev
OUT ?= build/plan-$(STACK).json

.PHONY: preview plan test policy-reference preflight smoke diff diff-stacks manifests bench clean

$(DEPS): requirements.txt requirements-dev.txt policies/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## Offline preview of a stack with the policy pack (exit 1 on a mandatory violation).
preview: $(DEPS)
	$(PY) -m tools.preview --stack $(STACK)

## The same preview written as a JSON plan (schema in README.md).
plan: $(DEPS)
	$(PY) -m tools.preview --stack $(STACK) --plan-out $(OUT) --quiet

## Every test, as CI runs them.
test: $(DEPS)
	$(PY) -m pytest tests -n 2 -q

clean:
	rm -rf $(VENV) build .pytest_cache
