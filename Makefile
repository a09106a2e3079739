# agent-billing: the commands a newcomer runs (see README.md). `make install` installs the
# runtime pins and the test tools (requirements-dev.txt), the product (editable) and the dev
# tools: the VSA simulator and the demo (dev/pyproject.toml), which the image leaves out.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install demo test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml dev/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "agent-billing needs Python 3.11 (its pins were resolved on it); $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
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
	rm -rf $(VENV) build *.egg-info include/*.egg-info dev/*.egg-info .pytest_cache data .airflow
