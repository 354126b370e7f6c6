# mvreml: set-up, build, demo and tests. Each target does all set-up on a fresh Debian.
SHELL := /bin/bash
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PYTHON ?= python3
# Debian packages: CHOLMOD headers/libs (libsuitesparse-dev) and an optimized BLAS
# (on the reference BLAS CHOLMOD's supernodal factorization is 2-3x slower).
APT_PKGS := libsuitesparse-dev libopenblas0-pthread python3-venv python3-dev gcc g++ make

# MPI (optional: fit(backend="mumps")): MUMPS, OpenMPI and its launcher; the Python side is
# the extra mvreml[mpi] of pyproject.toml (mpi4py, PyMUMPS, built against these headers).
MPI_APT_PKGS := libmumps-dev libopenmpi-dev openmpi-bin

.PHONY: demo test test-all bench setup sysdeps apt venv build clean mpi

demo: setup
	$(VENV)/bin/mvreml demo

# the tests include the MUMPS fits under mpirun: the MPI set-up is part of the test set-up
test: setup mpi
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m benchmarks.run $(BENCH_ARGS)

setup: sysdeps $(VENV)/.installed

sysdeps:
	@$(MAKE) --no-print-directory apt PKGS="$(APT_PKGS)"

# the packages of PKGS that dpkg does not know, installed by apt-get (sudo unless root)
apt:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
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

# MUMPS over MPI: the Debian packages, then the extra's Python packages. PyMUMPS builds
# from source against libmumps-dev (scikit-build-core, in pip's own build environment).
mpi: setup $(VENV)/.mpi

$(VENV)/.mpi: pyproject.toml
	@$(MAKE) --no-print-directory apt PKGS="$(MPI_APT_PKGS)"
	$(PIP) install -q $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['mpi']))")
	touch $@

build: setup
	$(PY) setup.py build_ext --inplace -q

clean:
	rm -rf build $(VENV) mvreml/_core/*.c mvreml/_core/*.so *.egg-info
