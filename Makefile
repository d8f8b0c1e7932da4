# webvirt: set-up, running and testing on a development or CI machine.
#
#   make setup        Debian packages, .venv, node_modules (scripts/setup.sh; fast when done)
#   make run          setup + services + migrate + bootstrap, then all processes (Procfile) in
#                     the foreground under honcho; Ctrl-C stops them all
#                     WEBVIRT_WEB_WORKERS=N: N web processes (uvicorn --workers, one port);
#                     WEBVIRT_WATCHERS=N: N event watchers (they share the hosts through Redis leases)
#   make test         the test suite on SQLite, then again on PostgreSQL without the browser tests and
#                     the real-guest (qemu) tests: they run the same database code as on SQLite and
#                     take most of the time
#   make lint         ruff, then mypy on webvirt (pyproject.toml's settings), then mypy --strict on
#                     webvirt/virt (the libvirt layer, which imports no Django)
#   make clean-state  stop the private Redis and delete .state (database, secrets, caches)
#
# REDIS_URL: scripts/services.sh starts a private Redis on .state/redis.sock unless REDIS_URL is
# set, and writes `export REDIS_URL=...` to .state/env; each recipe below sources that file in
# the same shell before it starts anything.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := setup

WEBVIRT_PORT ?= 8000
WEBVIRT_WEB_WORKERS ?= 1
WEBVIRT_WATCHERS ?= 1
PY = .venv/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/webvirt
export WEBVIRT_PORT WEBVIRT_WEB_WORKERS

.PHONY: setup services run test lint clean-state

setup:
	bash scripts/setup.sh

services: setup
	bash scripts/services.sh

run: setup
	bash scripts/services.sh >/dev/null
	. ./.state/env; \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py bootstrap; \
	exec .venv/bin/honcho start -f Procfile -c watcher=$(WEBVIRT_WATCHERS)

test: setup
	TEST_DATABASE_URL="$(TEST_DATABASE_URL)" bash scripts/test.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy webvirt
	.venv/bin/mypy --strict webvirt/virt

clean-state:
	if [ -f .state/redis.pid ] && kill -0 "$$(cat .state/redis.pid)" 2>/dev/null; then \
		kill "$$(cat .state/redis.pid)"; \
	fi
	rm -rf .state
