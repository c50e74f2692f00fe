# botdb's everyday commands. Each creates the virtual environment first when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.botdb-installed
PYTHON ?= python3

.PHONY: venv demo test test-pgbouncer test-citus bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Every suite marked PGBOUNCER_CONTRACT through a private pgbouncer (transaction mode).
test-pgbouncer: $(STAMP)
	BOTDB_TEST_PGBOUNCER_ALL=1 $(PY) -m pytest -k pgbouncer $(PYTEST_ARGS)

# The suites marked CITUS_CONTRACT on a 3-node Citus cluster on loopback (coordinator and two
# workers), started by the cluster scripts kept beside the checkout; each run makes, distributes
# and drops its own database on it.
CITUS_DIR_SCRIPTS ?= ../shared/citus
test-citus: $(STAMP)
	BOTDB_TEST_CITUS=1 BOTDB_TEST_CITUS_URL=$$($(CITUS_DIR_SCRIPTS)/start-cluster.sh) \
		$(PY) -m pytest -k citus $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
