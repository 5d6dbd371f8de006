# Two commands do all set-up: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
# Tools that call `dbt` by name (dagster-dbt's prepare-and-package) find the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint dev bench install install-test manifest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the packaging files change.
$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# dbt's manifest, as Dagster expects it outside `dagster dev`.
manifest: $(VENV)/.installed
	$(BIN)/dagster-dbt project prepare-and-package --file movielens_assets/project.py

run: manifest
	$(BIN)/movielens run

dev: manifest
	$(BIN)/movielens dev

bench: manifest
	$(BIN)/movielens bench --json bench.json

lint: $(VENV)/.installed-test manifest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs
	# sqlfluff's dbt templater compiles the models, which opens a DuckDB file: use a scratch one.
	scratch=$$(mktemp -d) && MOVIELENS_DUCKDB_PATH=$$scratch/warehouse.duckdb \
		$(BIN)/sqlfluff lint movielens_dbt; status=$$?; rm -rf $$scratch; exit $$status

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf .movielens movielens_dbt/target movielens_dbt/logs
