# lnn-control: `make train` (the main job) and `make test` (the whole suite). Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Where this machine keeps a CPU build of torch on disk, install it first so that pip does not pull the
# multi-GB CUDA build; elsewhere a normal install resolves torch>=2.4 as usual.
PYTAG := $(shell $(PYTHON) -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")' 2>/dev/null)
CPU_TORCH_WHEEL := $(lastword $(sort $(wildcard /opt/wheels/torch-*+cpu-$(PYTAG)-*.whl)))
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifneq ($(CPU_TORCH_WHEEL),)
	$(PY) -m pip install --quiet "$(CPU_TORCH_WHEEL)"
endif
	$(PY) -m pip install --quiet -e ".[dev,export,cluster,gpu]"
	touch $(STAMP)

## The main job: train a liquid policy on the default task (see README). Options: make train ARGS="--seed 1"
train: $(STAMP)
	$(PY) scripts/train_default.py $(ARGS)

## The whole suite, slow tests included (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q

## The quick inner loop: everything not marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) scripts/bench_cells.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
