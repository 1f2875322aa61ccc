# Book Bazar — entry points. Each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the pinned dependencies (the first time takes a few minutes)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start everything (embedded PostgreSQL + Redis when no URLs are set), seed, print the URLs.
run: $(STAMP)
	$(BIN)/bookbazar up

## Lint, then the whole test suite (the browser tests use Debian's Chromium, the
## scale-out tests Debian's HAProxy: each is installed when missing and possible).
test: $(STAMP) lint
	@scripts/ensure-chromium.sh || \
		export BOOKBAZAR_SKIP_BROWSER="Chromium is not installed and cannot be installed here"; \
	scripts/ensure-haproxy.sh || \
		export BOOKBAZAR_SKIP_BALANCER="HAProxy is not installed and cannot be installed here"; \
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .bookbazar .pytest_cache .mypy_cache .ruff_cache
