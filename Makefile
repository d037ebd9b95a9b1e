# Two entry points: `make book` (build the HTML book) and `make test` (the whole test suite).
# Both create the virtual environment and fetch the data on first use and skip what is done.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PIP := $(PY) -m pip install -q --disable-pip-version-check
PIP_NOISE := is ignored: it is neither
FMNIST_DEB_DIR := /usr/share/datasets/fashion-mnist

.PHONY: book test data browser reference throughput reproduce clean

# --all: every page executed again. Sphinx would otherwise rebuild only the changed notebooks and keep
# the other pages as the last build made them: from other code in lib/, or from another results folder.
book: $(INSTALLED) data
	$(VENV)/bin/jupyter-book build . --all --keep-going -W -n
	@echo "book: $(CURDIR)/_build/html/index.html"

# The seeded numbers that the notebook tests compare depend on the number of BLAS threads: fix it.
TEST_THREADS := OMP_NUM_THREADS=2 MKL_NUM_THREADS=2

test: $(INSTALLED) data browser
	$(TEST_THREADS) $(PY) -m pytest

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PIP) --no-deps -e . 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -c "import torch, lib, jupyter_book"
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist where apt-get can install it (as root).
data: $(INSTALLED)
	@if [ ! -d $(FMNIST_DEB_DIR) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || true; fi
	$(PY) -m lib data fetch

# Headless Chromium and its driver for tests/test_browser.py (the built book in a real browser), from
# Debian where apt-get can install them (as root); without them that test is skipped.
browser:
	@if ! command -v chromedriver >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || true; fi

# Re-record the expected outputs of the notebook smoke tests after an intended change of results.
reference: $(INSTALLED) data
	$(TEST_THREADS) $(PY) -m tests.notebook_reference

throughput: $(INSTALLED) data
	$(PY) benchmarks/throughput.py

# Every run of every chapter trained anew into results-reproduce/, on a local Dask cluster of one
# worker process per core (resumable: a second call goes on from the runs already there), then the
# book built from those results, and how many of its runs equal the stored ones bit for bit.
# REPRODUCE_ARGS="--scheduler tcp://HOST:8786" or "--cluster slurm" trains on a cluster instead.
REPRO := $(CURDIR)/results-reproduce
REPRODUCE_ARGS ?=
reproduce: $(INSTALLED) data
	PRESYN_RESULTS=$(REPRO) $(PY) -m lib reproduce $(REPRODUCE_ARGS)
	PRESYN_RESULTS=$(REPRO) $(VENV)/bin/jupyter-book build . --all --keep-going -W -n
	$(PY) -m lib compare $(REPRO)
	@echo "book: $(CURDIR)/_build/html/index.html"

clean:
	rm -rf _build
