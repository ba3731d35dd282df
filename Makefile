# The two commands of a fresh machine (README): `make demo` and `make test`.
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= checkpoints/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2
# tf.keras is tf_keras (the package uses tf_keras itself): `import tensorflow` then skips importing
# Keras 3, 0.8 of its 4.2 s at ~340 GFLOP/s, in every process the demo and the tests start.
export TF_USE_LEGACY_KERAS ?= 1

.PHONY: install test test-fast demo rows bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The whole suite (what .ci/run calls); test-fast leaves out the tests marked slow (pytest.ini), for the
# edit-test loop. README, Contributing: the times of both. Tests run in pytest-xdist workers, at most 4:
# each holds its own TensorFlow (about 1-2 GiB). The whole suite has one worker more than the cores (a
# worker waiting on a subprocess, a file sync or a poll leaves its core to the extra one: 457 s with 2
# workers, 425 s with 3 on 2 cores); the fast tier, which waits on nothing, one per core (42 s with 2,
# 47 s with 3). tests/conftest.py puts the longest first and has the workers share the rest by work
# stealing (--dist worksteal), so they end together.
CORES ?= $(shell $(PYTHON) -c "import os; print(os.cpu_count() or 1)")
TEST_WORKERS ?= $(shell echo $$(( $(CORES) + 1 < 4 ? $(CORES) + 1 : 4 )))
FAST_TEST_WORKERS ?= $(shell echo $$(( $(CORES) < 4 ? $(CORES) : 4 )))

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

test-fast: install
	$(PY) -m pytest -q -n $(FAST_TEST_WORKERS) tests -m "not slow"

demo: install
	$(PY) experiments/demo.py --demo_dir=$(DEMO_DIR)

rows: install
	$(PY) -m omg_cnnrnn.experiments --list

bench: install
	$(PY) experiments/bench_models.py

clean:
	rm -rf $(VENV) *.egg-info
