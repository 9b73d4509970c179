# `make demo` sets everything up and runs the bundled example; `make test` runs the tests
# (CI runs it); `make check` is the quick loop: ruff, the layer contract, the fast unit tests.
# TORCH picks the torch build: the default is the CPU wheel this project is developed on;
# on a GPU machine, `make install TORCH=torch` takes PyPI's default (CUDA) build.

VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test check layers bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The default model and the memory embedder, as a user installs them.
	$(BIN)/mempipe models install
	touch $@

demo: install
	$(BIN)/mempipe --trace "summarize examples/data/alice_in_wonderland.txt | ask 'Who is the story about?'"
	$(BIN)/mempipe "read examples/data/alice_in_wonderland.txt | remember --into alice" > /dev/null
	$(BIN)/mempipe --json "ask 'Who said \"Off with her head\"?' --from alice"

test: install layers
	$(BIN)/ruff check .
	$(BIN)/pytest

check: install layers
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not integration and not slow"

# The import contract of pyproject.toml ([tool.importlinter]). lint-imports reads a
# package from its own folder, and pyproject maps pipes/, agents/ and memory/ into
# mempipe from outside it: the check reads a copy laid out as the installed package.
layers: install
	@tree=$$(mktemp -d) && trap 'rm -rf "$$tree"' EXIT && cp -r mempipe "$$tree/" \
	  && for part in pipes agents memory; do cp -r $$part "$$tree/mempipe/"; done \
	  && cd "$$tree" && PYTHONPATH="$$tree" "$(CURDIR)/$(BIN)/lint-imports" --no-cache \
	     --no-logo "$(CURDIR)/pyproject.toml"

bench: install
	$(BIN)/python bench/core.py --json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
