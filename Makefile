# kubequeue — developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## system-deps: redis-server and prometheus/promtool from Debian, if missing
system-deps:
	./scripts/system-deps.sh

## test: unit, integration (real Redis/Valkey + simulated cluster) and end-to-end (real Airflow)
test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: unit tests only
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kubequeue executor dispatcher watcher sim bench

demo: $(STAMP)
	$(BIN)/kubequeue demo

bench: $(STAMP)
	$(BIN)/kubequeue bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
