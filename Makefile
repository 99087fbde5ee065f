# Two commands do all the set-up on a fresh clone with only python3 and make:
#   make demo   - the real flow against the bundled simulator, into ./regards-demo
#   make test   - lint, format check, type check and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
# uv from PATH when present, else a private copy installed from PyPI into .tools/.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
# Never let uv download an interpreter: use the python3 that is here.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test test-loaded lint sync clean serve tools bench

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set, every process would
	# otherwise compile Prefect again (import prefect: 4.9 s instead of 2.7 s here).
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	touch $@

sync: $(VENV)/.synced

demo: $(VENV)/.synced
	# Prefect's embedded default: a private home, no API URL, nothing to start by hand.
	env -u PREFECT_API_URL PREFECT_HOME=$(CURDIR)/.prefect-demo \
		$(VENV)/bin/regards-order demo --target ./regards-demo

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The download-order deployments, served from this process (see "Run it in Prefect").
serve: $(VENV)/.synced
	$(VENV)/bin/python deployments/serve.py

# Debian tools the tests and the benchmark drive: Chromium (the UI test), tmux (the test of the
# live display), curl, aria2 and GNU time (the baselines of the benchmark and its smoke test).
# Installed where missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
tools:
	@test -x /usr/bin/chromium && command -v tmux >/dev/null && command -v curl >/dev/null \
		&& command -v aria2c >/dev/null && test -x /usr/bin/time \
		|| ! command -v apt-get >/dev/null || \
		{ $(SUDO) apt-get update -qq && \
		  $(SUDO) apt-get install -y -qq chromium tmux curl aria2 time >/dev/null; }

test: lint tools
	env -u PREFECT_API_URL PREFECT_HOME=$$(mktemp -d) $(VENV)/bin/pytest $(PYTEST_ARGS)

# The command line's end-to-end tests on a machine whose cores are all busy: the test session
# runs one busy loop per core beside them (tests/conftest.py, REGARDS_TEST_CPU_HOGS).
test-loaded: $(VENV)/.synced tools
	env -u PREFECT_API_URL PREFECT_HOME=$$(mktemp -d) REGARDS_TEST_CPU_HOGS=$$(nproc) \
		$(VENV)/bin/pytest tests/regards_order/cli $(PYTEST_ARGS)

# The pipeline against curl and aria2c: benchmarks/results/latest.{txt,json,png} (~5 min).
# Sizes and repetitions: make bench BENCH_ARGS="--reps 5" (see python -m benchmarks.bench -h).
bench: $(VENV)/.synced tools
	env -u PREFECT_API_URL PREFECT_HOME=$$(mktemp -d) PREFECT_SERVER_ANALYTICS_ENABLED=false \
		$(VENV)/bin/python -m benchmarks.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools .prefect-demo regards-demo .pytest_cache .mypy_cache .ruff_cache
