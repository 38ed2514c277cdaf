# The few commands a person types. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0   # the tested pin: a CPU build, installed before the package
STORE := $(CURDIR)/mlruns
PORT ?= 5000

.PHONY: install demo test test-fast bench ui lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $@

demo: install
	$(PY) -m admmlab.demo

# Tests run on every core (up to four workers): most of their time is start-up of
# the command-line runs they make, which parallelises well. The fast tests run a
# module per worker, so a module's costly fixture (a study to report on) is built
# once; the slow ones are spread test by test, as each takes minutes.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses=4

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) --dist loadscope -m "not slow"

bench: install
	$(PY) benchmarks/run_all.py

# One worker: enough for one person, and light on a laptop (MLflow's default is four).
ui: install
	mkdir -p $(STORE)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(STORE)/mlflow.db \
		--default-artifact-root $(STORE)/artifacts --host 127.0.0.1 --port $(PORT) --workers 1

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf outputs multirun reports .pytest_cache
