# curvlab: `make reproduce` regenerates every figure and table; `make test` checks everything.
# Both set up what they need (virtualenv, pinned packages, datasets) and are idempotent.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
SCALE      ?= ci
NOTEBOOKS  := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NBVAL      := --nbval --nbval-current-env --nbval-sanitize-with tools/nbval_sanitize.cfg --nbval-cell-timeout 1800

# Deterministic, quiet headless runs: fixed thread count, no progress bars in stored outputs.
export CURVLAB_THREADS  ?= 2
export OMP_NUM_THREADS  ?= $(CURVLAB_THREADS)
export PYTHONHASHSEED   := 0
# The same vector instruction set on every x86 machine: PyTorch's own kernels and oneDNN's
# convolutions otherwise pick AVX-512 code where the CPU has it, whose different summation order
# changes the last bits and, after a few epochs of training, the printed digits that nbval compares.
export ATEN_CPU_CAPABILITY ?= avx2
export ONEDNN_MAX_CPU_ISA  ?= AVX2
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.DEFAULT_GOAL := help
.PHONY: help setup data test unit lint reproduce lab sync bench lock clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv with the pinned packages and curvlab (editable)

data: setup  ## fetch the datasets into data/ and report each one's state
	$(PY) -m curvlab.fetch

test: setup data  ## unit tests, docstring examples, and nbval on every committed notebook
	CURVLAB_PROGRESS=0 $(PY) -m pytest -q -p no:cacheprovider --doctest-modules --ignore-glob='notebooks/*.py' lib/curvlab tests notebooks $(NBVAL)

unit: setup  ## unit tests and docstring examples (no notebooks)
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules lib/curvlab tests

lint: setup  ## ruff: pyflakes, pycodestyle, import order, Google-style docstrings (pyproject.toml)
	$(VENV)/bin/ruff check lib tests benchmarks tools notebooks/*.py

reproduce: setup data  ## run every notebook headless (SCALE=ci|paper), regenerate figures/ and tables/
	@set -e; for py in $(NOTEBOOKS); do \
	  nb=$${py%.py}.ipynb; \
	  $(VENV)/bin/jupytext --quiet --sync $$py; \
	  if [ "$(SCALE)" = ci ]; then out=$$nb; params=""; \
	  else mkdir -p out/$(SCALE); out=out/$(SCALE)/$$(basename $$nb); params="-p SCALE $(SCALE)"; fi; \
	  echo "== $$py (SCALE=$(SCALE)) -> $$out"; \
	  CURVLAB_PROGRESS=0 $(VENV)/bin/papermill --no-progress-bar -k python3 --cwd notebooks $$params $$nb $$out; \
	  $(PY) tools/clean_notebook.py $$out; \
	  [ "$$out" = "$$nb" ] && $(VENV)/bin/jupytext --quiet --sync $$nb || true; \
	done
	$(PY) -m curvlab.repro.papers
	$(PY) -m curvlab.experiment --stale $(SCALE)
	@echo; echo "Figures: $$(pwd)/figures/   Tables: $$(pwd)/tables/   Records: $$(pwd)/results/$(SCALE)/"
	@ls -d figures/*/ tables/*/ 2>/dev/null | sed 's/^/  /'

lab: setup data  ## open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks

sync:  setup ## pair every notebooks/NN_*.py with its .ipynb (jupytext --sync)
	$(VENV)/bin/jupytext --sync $(NOTEBOOKS)

.peers/.installed: benchmarks/peers.txt
	$(PY) -m pip install -q --no-deps --target .peers -r benchmarks/peers.txt
	touch $@

bench: setup .peers/.installed  ## print each method's cost as a ratio to a plain gradient step (peers beside)
	@for b in $(sort $(wildcard benchmarks/*.py)); do echo "== $$b"; $(PY) $$b --peers .peers; done

lock: setup  ## re-pin requirements.lock and environment.yml from .venv
	$(PY) tools/lock.py

clean:  ## remove ci-scale records and caches (keeps data/, .venv and results/paper/)
	rm -rf results/ci out .peers .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
