# The README's two commands: `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pip keeps its wheel cache under ~/.cache/pip, so repeat installs (torch too) are quick
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip

.PHONY: demo test bench venv services stop-services clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,train]'
	touch $@

venv: $(VENV)/.installed

demo: venv  ## embedded server + the bundled MovieLens data through boto3
	$(PY) scripts/demo.py

test:  ## unit, then integration + e2e against real Kafka, Redis and PostgreSQL (started and stopped here)
	scripts/test.sh

bench: venv  ## bench/: PutEvents throughput and freshness (embedded, Kafka; 1 vs 2 workers and APIs on 3 brokers), the sustained rate, the session path, bulk CSV import, GetRecommendations latency (also beside a training), batch inference
	scripts/system_deps.sh bench
	scripts/kafka_jars.sh >/dev/null
	$(PY) bench/ingest.py
	$(PY) bench/scale.py
	$(PY) bench/sustained.py
	$(PY) bench/apply.py
	$(PY) bench/import_bench.py
	$(PY) bench/serve.py
	$(PY) bench/training_beside_serving.py
	$(PY) bench/batch.py

services: venv  ## long-lived Kafka + Redis + PostgreSQL for distributed mode (addresses: scripts/services.py env)
	scripts/system_deps.sh
	$(PY) scripts/services.py start --kafka-port 9092 --redis-port 6379 --postgres-port 5432

stop-services:
	$(PY) scripts/services.py stop

clean:
	rm -rf .cache/demo .cache/services
