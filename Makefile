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

.PHONY: demo test lint sync clean serve browser

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
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

# The UI test drives the Prefect UI in Debian's Chromium: install it where it is missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

test: lint browser
	env -u PREFECT_API_URL PREFECT_HOME=$$(mktemp -d) $(VENV)/bin/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .tools .prefect-demo regards-demo .pytest_cache .mypy_cache .ruff_cache
