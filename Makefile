# agent-billing: the commands a newcomer runs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install demo test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e . -e dev
	@touch $@
	@echo "installed: $(BIN)/airflow and $(BIN)/agent-billing"

demo: install
	$(BIN)/agent-billing demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check include plugins dags tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache data .airflow
