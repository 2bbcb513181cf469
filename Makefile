# Two entry points on a fresh Debian/Ubuntu machine (everything else is set up by them):
#   make demo   the embedded default: Temporal dev server + Web UI + a canaryflow worker
#   make test   the whole test suite (unit, workflow, integration)
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")

.PHONY: setup test test-unit test-workflow test-integration lint demo

setup:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet uv || \
		(curl -LsSf https://astral.sh/uv/install.sh | sh)
	$(UV) sync --locked

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

test-unit: setup
	$(UV) run pytest -q tests/unit tests/activities

test-workflow: setup
	$(UV) run pytest -q tests/workflow tests/replay

test-integration: setup
	$(UV) run pytest -q tests/integration tests/cli

test: lint test-unit test-workflow test-integration

demo: setup
	$(UV) run canaryflow dev
