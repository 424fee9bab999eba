# qsem developer entry points. Everything runs from the project's own .venv;
# no globally installed tool is used after the venv exists.
#
#   make run       install (if needed) and run the story (qsem run story) into runs/story-<timestamp>
#   make test      default test suite: tests/, the examples/ notebooks (nbmake) and the
#                  strict docs build (slow studies excluded)
#   make studies   the slow-marked studies
#   make lint      ruff check, ruff format --check, mypy
#   make mutation  mutation testing (mutmut) of core modules, each against its own tests
#                  (docs/testing.md); reports in build/mutation/. MUTATION_ARGS='kernels' for one
#   make format    ruff format + ruff check --fix
#   make bench     benchmarks/run_all.py
#   make gpu-check CUDA tests + GPU-size workloads, CUDA vs CPU (benchmarks/gpu_check.py)
#   make docs      mkdocs build --strict into site/
#   make clean     caches and build output (keeps .venv and runs/)
#   make distclean clean + remove .venv

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS := --progress-bar off --disable-pip-version-check

# extra arguments for pytest, e.g. `make test PYTEST_ARGS='-k swap -x'`
PYTEST_ARGS ?=

.PHONY: help venv run test studies lint format mutation bench gpu-check docs clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# --- environment ------------------------------------------------------------

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the declared dependencies, the pins or the native kernel change
# (the editable install builds simulators/_native/qsem_native.c in place).
$(STAMP): pyproject.toml constraints.txt setup.py simulators/_native/qsem_native.c | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[all]'
	@touch $@

venv: $(STAMP)

# --- run / test ---------------------------------------------------------------

run: venv
	$(BIN)/qsem run story    # into a fresh runs/story-YYYYmmdd-HHMMSS; nothing earlier is overwritten

# pytest exit code 5 means "no tests collected": that is a failure, not a pass.
test: venv
	@rc=0; $(PY) -m pytest -n 2 -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

studies: venv
	@rc=0; $(PY) -m pytest -m slow -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make studies: pytest collected no slow tests (exit 5)" >&2; fi; \
	exit $$rc

# --- quality ------------------------------------------------------------------

# mypy cannot follow setuptools' editable import hook, so on its own it would
# see `qsem.circuits` / `qsem.simulators` as missing (typed Any, silently, with
# ignore_missing_imports). Type-check a symlinked view of the installed layout
# instead (build/typecheck/qsem/{circuits,simulators} -> the repo folders) and
# map the reported paths back to the repository's.
TYPECHECK := build/typecheck
MYPY_PATHS := s\#^$(TYPECHECK)/qsem/circuits/\#circuits/\#;s\#^$(TYPECHECK)/qsem/simulators/\#simulators/\#;s\#^$(TYPECHECK)/qsem/\#qsem/\#

# Runs all three checks and fails if any of them failed.
lint: venv
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/qsem
	@for e in qsem/*; do ln -s "$(CURDIR)/$$e" $(TYPECHECK)/qsem/; done
	@ln -s "$(CURDIR)/circuits" $(TYPECHECK)/qsem/circuits
	@ln -s "$(CURDIR)/simulators" $(TYPECHECK)/qsem/simulators
	@fail=0; \
	echo "+ ruff check ."; $(BIN)/ruff check . || fail=1; \
	echo "+ ruff format --check ."; $(BIN)/ruff format --check . || fail=1; \
	echo "+ mypy -p qsem"; \
	{ MYPYPATH=$(TYPECHECK) $(BIN)/mypy -p qsem; echo $$? > $(TYPECHECK)/mypy.rc; } \
		| sed -e '$(MYPY_PATHS)'; [ "$$(cat $(TYPECHECK)/mypy.rc)" = 0 ] || fail=1; \
	exit $$fail

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Not part of `make test`: about 10-30 minutes on 2 cores. Fails when a module scores < 90 %.
MUTATION_ARGS ?=
mutation: venv
	nice -n 5 $(PY) tools/mutation.py $(MUTATION_ARGS)

# --- benchmarks / docs --------------------------------------------------------

bench: venv
	$(PY) benchmarks/run_all.py

# No venv prerequisite: the GPU machine has no network, so nothing may be installed
# there; the project's .venv is used when present, else the python3 on PATH.
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py

docs: venv
	$(PY) -m mkdocs build --strict --site-dir site

# --- cleanup ------------------------------------------------------------------

clean:
	rm -rf site build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
