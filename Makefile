# cxpulse developer entry points. The README's two commands are `make run` and `make test`;
# both install everything they need into ./.venv on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DURATION ?= 120
RATE ?= 100
SEED ?= 42
PYTEST_ARGS ?=

.PHONY: help install kafka tools run test lint unit integration bench soak clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "error: java (17+) is required for the local Kafka broker" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn is required to fetch the Kafka broker jars" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)  ## create .venv and install cxpulse with its dev tools

kafka:  ## fetch the Kafka broker jars into ~/.cache/cxpulse (once)
	bash deploy/kafka/kafka.sh fetch

tools:  ## Debian packages the tests need: promtool, amtool, alertmanager (once)
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null; }

run: install kafka  ## the main job: local Kafka + simulator + workers + chDB + live board
	CXPULSE_PYTHON=$(PY) $(VENV)/bin/cxpulse run --duration $(DURATION) --rate $(RATE) --seed $(SEED)

lint: install  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: install tools  ## unit tests only (no broker)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

integration: install kafka tools  ## integration tests only (real broker, real workers, chDB)
	CXPULSE_PYTHON=$(PY) $(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

test: install kafka tools lint  ## the whole suite: lint, unit, integration (one shared local broker)
	CXPULSE_PYTHON=$(PY) $(PY) -m pytest -q $(PYTEST_ARGS)

bench: install kafka  ## benchmarks, ratios measured side by side (bench/README.md)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/contract_throughput.py
	$(PY) bench/customer_logic.py
	$(PY) bench/query_latency.py
	CXPULSE_PYTHON=$(PY) $(PY) bench/pipeline_throughput.py

soak: install kafka  ## RSS of both workers over a 30-minute steady run (bench/soak.py)
	CXPULSE_PYTHON=$(PY) $(PY) bench/soak.py --minutes 30

clean:  ## remove generated state (var/, caches); keeps .venv and the jar cache
	rm -rf var .pytest_cache .ruff_cache .hypothesis
