# mvreml: set-up, build, demo and tests. Each target does all set-up on a fresh Debian.
SHELL := /bin/bash
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PYTHON ?= python3
# Debian packages: CHOLMOD headers/libs (libsuitesparse-dev) and an optimized BLAS
# (on the reference BLAS CHOLMOD's supernodal factorization is 2-3x slower).
APT_PKGS := libsuitesparse-dev libopenblas0-pthread python3-venv python3-dev gcc g++ make

.PHONY: demo test test-all bench setup sysdeps venv build clean

demo: setup
	$(VENV)/bin/mvreml demo

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m benchmarks.run $(BENCH_ARGS)

setup: sysdeps $(VENV)/.installed

sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# scikit-sparse 0.4.x builds against SuiteSparse 5 (Debian 12); 0.5 needs SuiteSparse 7 (Debian 13).
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml setup.py $(wildcard mvreml/_core/*.pyx)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "setuptools>=64" wheel "Cython>=3.0" "numpy>=1.24" "scipy>=1.10"
	@ver=$$(grep -hoE 'define SUITESPARSE_MAIN_VERSION +[0-9]+' /usr/include/suitesparse/SuiteSparse_config.h 2>/dev/null | awk '{print $$3}' | head -1); \
	if [ "$${ver:-0}" -ge 7 ] 2>/dev/null; then spec="scikit-sparse>=0.5"; iso=""; \
	else spec="scikit-sparse>=0.4.12,<0.5"; iso="--no-build-isolation"; fi; \
	echo "SuiteSparse $$ver -> $$spec (mvreml/cholmod.py adapts to either API)"; \
	$(PIP) install -q $$iso "$$spec"
	$(PIP) install -q --no-build-isolation -e ".[test,plot,dask]"   # dask: tests/test_many.py runs on it
	touch $@

build: setup
	$(PY) setup.py build_ext --inplace -q

clean:
	rm -rf build $(VENV) mvreml/_core/*.c mvreml/_core/*.so *.egg-info
