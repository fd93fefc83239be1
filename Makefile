# The README's two commands: `make demo` and `make test`. Each creates the virtual
# environment if it is missing and installs the project with the pinned constraints.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.prunetune-installed
CONFIG ?= configs/demo.yaml

.PHONY: demo test test-fast lint format install bench clean-results

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/prunetune search $(CONFIG)

# The browser test needs Debian's chromium and the data tests Debian's dataset-fashion-mnist:
# installed here when missing (as root, e.g. CI), and required (a clear failure, not a skip)
# under `make test`, which lists its 20 slowest tests. The suite runs in JOBS pytest-xdist
# workers, a test file to each (its module fixtures run once): the end-to-end tests spend
# much of their time waiting on processes they start, which a second worker fills.
JOBS ?= 2
test: $(STAMP) lint
	.ci/ensure-chromium
	.ci/ensure-datasets
	PRUNETUNE_REQUIRE_BROWSER=1 PRUNETUNE_REQUIRE_DATASETS=1 $(PY) -m pytest -q -n $(JOBS) --dist loadfile --durations=20

# The fast subset: no Ray cluster, MLflow server or browser. It lists its slowest tests, so a
# new slow one is noticed in the change that adds it.
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -m "not integration" --durations=15

# Lint (with import order) and the formatter's check: seconds, so `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrite the tree as the formatter and the linter's safe fixes want it.
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean-results:
	rm -rf results
