# Two set-up commands on a fresh machine: `make demo` and `make test` (see README.md).
# Everything installs from the hashed lock files, so a laptop, CI and a flashed unit run exactly
# the tested versions. `make lock` refreshes them from pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint typecheck unit bench lock clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-build: requirements-build.lock | $(BIN)/python
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-build.lock
	touch $@

# The project itself is installed without build isolation, built by the locked setuptools and
# wheel, so nothing unpinned is fetched.
$(VENV)/.installed: requirements.lock pyproject.toml $(VENV)/.installed-build
	$(PIP) install --quiet --require-hashes --no-deps -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.lock pyproject.toml $(VENV)/.installed-build
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/lfr demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The console's browser tests drive Debian's chromium (Playwright cannot download its own here);
# installed with apt when missing and allowed, else the tests skip naming the package.
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) \
		|| echo "make: chromium is not installed and apt-get could not install it: the browser tests will skip"

# The slowest tests are listed at the end: CI must end within 15 minutes. Two worker
# processes (the machine's two cores), each test file kept whole on one (its module fixtures):
# 9.5 minutes instead of 15.
unit: $(VENV)/.installed-dev browser
	$(BIN)/python -m pytest --numprocesses=2 --dist=loadfile --durations=30

test: lint typecheck unit

bench: $(VENV)/.installed
	$(BIN)/lfr bench runtime

lock: | $(BIN)/python
	$(PIP) install --quiet uv
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		-c lock-constraints.txt pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		--extra dev -c lock-constraints.txt pyproject.toml -o requirements-dev.lock
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		build-requirements.in -o requirements-build.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
