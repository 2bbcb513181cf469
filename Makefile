# Two entry points on a fresh Debian/Ubuntu machine (everything else is set up by them):
#   make demo   the local demo: Temporal + Web UI, HAProxy, Prometheus, a good release and a bad one
#   make test   the whole test suite (unit, workflow, integration)
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: setup system-packages test test-unit test-workflow test-kube test-providers test-local test-integration lint demo

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@# prometheus brings promtool; openssl makes the TLS webhook test's certificate; shellcheck checks the kind script.
	@(for tool in haproxy prometheus promtool hey openssl shellcheck; do command -v $$tool >/dev/null || exit 1; done) || \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends haproxy prometheus hey openssl shellcheck >/dev/null)
	@# kubectl: a second, independent client against the in-memory API server (any kubectl on PATH will do).
	@command -v kubectl >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends kubernetes-client >/dev/null)

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || \
		(curl -LsSf https://astral.sh/uv/install.sh | sh)
	$(UV) sync --locked

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	@if docker compose version >/dev/null 2>&1; then docker compose config --quiet; \
		else echo "docker compose not installed: docker-compose.yml checked by tests/unit/test_compose.py only"; fi

test-unit: setup system-packages
	$(UV) run pytest -q tests/unit tests/activities

test-workflow: setup
	$(UV) run pytest -q tests/workflow tests/replay

test-kube: setup system-packages
	$(UV) run pytest -q tests/fakekube tests/kube

test-providers: setup system-packages
	$(UV) run pytest -q tests/metrics tests/metrics_extra tests/observability

test-local: setup system-packages
	$(UV) run pytest -q tests/local tests/e2e

test-integration: setup system-packages
	$(UV) run pytest -q tests/integration tests/cli

test: lint test-unit test-workflow test-kube test-providers test-local test-integration

demo: setup system-packages
	$(UV) run canaryflow demo
