# Each target works on a fresh machine with Python 3.11+ and make: it creates
# .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: test demo docs bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

test: $(VENV)/.installed-test,docs,demo
	$(BIN)/ruff check src tests property_tests benchmarks examples docs
	$(BIN)/ruff format --check src tests property_tests benchmarks examples docs
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d site
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests property_tests \
		--doctest-modules src/purestate

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py $(DEMO_ARGS)

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

# BENCH_ARGS=--quick for a short run; the default run takes about 30 min on 2 cores (COBA with its peers, 4,000 and 40,000 neurons, is most of it) and builds the peers' Python 3.12 environments on first use
bench: $(VENV)/.installed-bench,demo
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests property_tests benchmarks examples docs
	$(BIN)/ruff format --check src tests property_tests benchmarks examples docs
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests property_tests benchmarks examples docs
	$(BIN)/ruff check --fix src tests property_tests benchmarks examples docs

clean:
	rm -rf $(VENV) site demo_output
