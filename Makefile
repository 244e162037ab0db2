# The two commands that matter: `make run` (the whole product on SQLite, Envoy in front) and
# `make test` (every test). Everything else is a step of theirs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install gen lint bench bench-feed clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

install: $(STAMP) node_modules/.installed

run: $(STAMP)
	$(PY) -m devstack

test: install
	$(PY) -m pytest

gen: $(STAMP)
	$(PY) scripts/gen.py

lint: install
	$(PY) -m pytest tests/test_contract.py

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

bench-feed: install
	$(PY) bench/feed.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules build .local
