# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/test
# The browser tests drive Debian's Chromium; a fresh machine gets it on the first `make test`.
CHROMIUM := /usr/bin/chromium

.PHONY: run demo test test-sqlite test-postgres lint format install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	$$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update
	$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

run: install
	$(BIN)/borealis serve --host $(HOST) --port $(PORT)

# Borealis against a simulated Dynatrace (its own ./data-demo, emptied on every run): no tenant needed.
demo: install
	$(BIN)/borealis demo --host $(HOST) --port $(PORT)

test: install $(CHROMIUM)
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install
	BOREALIS_TEST_DATABASE=sqlite $(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	BOREALIS_TEST_DATABASE=postgresql BOREALIS_TEST_PG_ADMIN_URL=$(PG_ADMIN_URL) $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) .pytest_cache artifacts site data-demo

# The documentation site: the README's links checked, the OpenAPI document exported from the code, then
# MkDocs with --strict, so a broken link or a page missing from the navigation fails. Built into site/.
.PHONY: docs
docs: install
	$(BIN)/python scripts/check_links.py README.md bench/README.md
	$(BIN)/python scripts/export_openapi.py docs/api/openapi.json
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
