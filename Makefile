# eqcat: two commands do everything on a fresh machine.
#   make demo   set up if needed, then build the embedded synthetic Tottori-like catalog
#   make test   set up if needed, then run the whole test suite
#   make bench-seisbench   SeisBench's EQTransformer on the picking benchmark's record, in its
#                          own environment (.venv-seisbench: SeisBench and PyTorch, ~6 GB)
.PHONY: setup setup-test demo test lint bench-seisbench

VENV := .venv
PYTEST_ARGS ?=
# GPU=1: TensorFlow with NVIDIA's CUDA wheels instead of the CPU-only set-up (never both).
GPU ?= 0

setup:
	GPU=$(GPU) bash scripts/setup.sh

setup-test:
	GPU=$(GPU) bash scripts/setup.sh --test-tools

demo: setup
	$(VENV)/bin/eqcat demo

test: setup-test
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

SEISBENCH_VENV := .venv-seisbench
bench-seisbench:
	test -x $(SEISBENCH_VENV)/bin/python || \
		(python3 -m venv $(SEISBENCH_VENV) && $(SEISBENCH_VENV)/bin/pip install -q "seisbench==0.12.6")
	$(SEISBENCH_VENV)/bin/python benchmarks/seisbench_throughput.py

lint:
	$(VENV)/bin/ruff format --check pipeline flows tests benchmarks
	$(VENV)/bin/ruff check pipeline flows tests benchmarks
