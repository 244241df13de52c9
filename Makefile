# cardkeep: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
DATA   ?= ./var
PYTEST_ARGS ?=
# `make lock` runs pip-compile from this throwaway venv; LOCK_ARGS=--upgrade moves every pin.
LOCK_VENV := .venv-lock
PIP_TOOLS ?= pip-tools==7.6.2
LOCK_ARGS ?=

.PHONY: install lock run demo screenshots test quick lint coverage bench clean browser-check axe

# A new .venv with exactly the pinned, hash-checked set from the lock file (nothing left over
# from an older lock), then cardkeep itself (editable, no deps). `pip check` fails the install
# when the lock no longer satisfies cardkeep's runtime dependencies, i.e. pyproject.toml was
# edited without `make lock`.
$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

# Regenerate requirements.lock from pyproject.toml (runtime deps + the dev extra, with hashes).
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip '$(PIP_TOOLS)'
	CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --quiet \
	  --extra dev --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
	  $(LOCK_ARGS) -o $(LOCK) pyproject.toml; \
	  status=$$?; rm -rf $(LOCK_VENV); exit $$status

run: $(STAMP)
	$(BIN)/cardkeep serve --data-dir $(DATA) --sandbox-account

# The demo merchant (examples/merchant-demo): a sandbox cardkeep on $(DATA) as `make run` starts it,
# and the restaurant site on DEMO_PORT in front of it; Ctrl-C stops both.
API_PORT  ?= 8000
PCI_PORT  ?= 8001
DEMO_PORT ?= 8080
demo: $(STAMP)
	$(BIN)/python examples/merchant-demo/run.py --data-dir $(DATA) \
	  --api-port $(API_PORT) --pci-port $(PCI_PORT) --port $(DEMO_PORT)

# docs/screenshots/*.png: the demo driven through a booking, a card and a no-show charge by
# Debian's chromium, against a throwaway sandbox cardkeep on free ports.
screenshots: browser-check $(STAMP)
	$(BIN)/python examples/merchant-demo/screenshots.py --out docs/screenshots

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# The in-process suites under branch coverage, gated at 95 % for domain/ and service/ (the overall
# figure is reported, not gated), then the end-to-end suite against real servers.
COVER_GATED := --include='src/cardkeep/domain/*,src/cardkeep/service/*'
IN_PROCESS  := tests/unit tests/integration tests/contract

# The browser tests drive Debian's chromium (a downloaded browser does not work here); without it
# the run stops before anything else, with one line naming the package.
CHROMIUM := /usr/bin/chromium
browser-check:
	@test -x $(CHROMIUM) || { echo "make test needs Debian's chromium package ($(CHROMIUM)): apt-get install chromium" >&2; exit 1; }

# axe-core (the accessibility test injects it into the hosted card page), pinned by
# tests/e2e/browser/package-lock.json; reinstalled with `npm ci` when the lock file is newer.
BROWSER_JS := tests/e2e/browser
AXE        := $(BROWSER_JS)/node_modules/axe-core/axe.min.js
$(AXE): $(BROWSER_JS)/package.json $(BROWSER_JS)/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs npm for axe-core: apt-get install npm" >&2; exit 1; }
	npm ci --prefix $(BROWSER_JS) --no-audit --no-fund
	touch $(AXE)

axe: $(AXE)

# The browser tests run in a pytest run of their own: Playwright's sync API keeps an event loop
# running in its thread for the whole session, which the other end-to-end tests' asyncio.run()
# cannot share.
BROWSER_TESTS := tests/e2e/browser
test: browser-check axe lint
	$(BIN)/pytest -n 2 --cov --cov-report= $(PYTEST_ARGS) $(IN_PROCESS)
	$(BIN)/coverage report $(COVER_GATED) --skip-covered --fail-under=95
	@echo "coverage of everything the in-process suites reach: $$($(BIN)/coverage report --format=total) %"
	$(BIN)/pytest -n 2 --durations=15 $(PYTEST_ARGS) tests/e2e --ignore=$(BROWSER_TESTS)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS) $(BROWSER_TESTS)

# Day-to-day: lint and every test not marked slow (the race, crash and outage suites are slow).
quick: browser-check axe lint
	$(BIN)/pytest -n 2 -m "not slow" $(PYTEST_ARGS) $(IN_PROCESS) tests/e2e --ignore=$(BROWSER_TESTS)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS) $(BROWSER_TESTS)

# The full branch-coverage report of the in-process suites, file by file.
coverage: $(STAMP)
	$(BIN)/pytest -n 2 --cov --cov-report=term $(PYTEST_ARGS) $(IN_PROCESS)

# BENCH_ARGS, e.g. --engines postgres --workers 2 --flows 1000 (see python -m tests.bench --help).
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(BROWSER_JS)/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
