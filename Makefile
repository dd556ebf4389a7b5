# Every target bootstraps what it needs: system packages (as root), a virtual
# environment in .venv and the project installed into it in editable mode.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint system-deps clean

demo: system-deps $(STAMP)
	$(BIN)/cartwheel demo

test: system-deps $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check services models schemas tests
	$(BIN)/ruff format --check services models schemas tests
	$(BIN)/mypy schemas services models

system-deps:
	@bash .ci/system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .cartwheel
