# tenantml: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-system test-unit lint bench up clean chromium

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) -c constraints.txt -e '.[dev]'
	@# Every flow run starts a fresh interpreter: compile once so none of them compiles from source.
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tenantml.local.demo

# Every layer but the production path's whole-system tests (`make test-system`, about as long again):
# under 20 minutes on 2 cores.
test: $(STAMP) lint chromium
	$(PY) -m pytest -m "not system"

test-system: $(STAMP)
	$(PY) -m pytest -m system

# tests/e2e/test_browser.py drives Debian's headless Chromium (Playwright downloads no browser of its
# own): installed here when missing and we are root; otherwise that test is skipped and says why.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; \
	else \
		echo "not installing chromium (not root, or no apt-get): tests/e2e/test_browser.py will be skipped"; \
	fi

# Unused or undefined names (ruff), the architecture contracts (.importlinter) and the types
# (mypy.ini): seconds, so they run first in `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check tenantml flows serving blocks tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: $(STAMP)
	$(PY) -m tests.benchmarks

up: $(STAMP)
	$(VENV)/bin/tenantml up

clean:
	rm -rf $(VENV) .tenantml .pytest_cache
