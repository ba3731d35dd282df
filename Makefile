# The two commands of a fresh machine (README): `make demo` and `make test`.
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= checkpoints/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-fast demo rows bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The whole suite (what .ci/run calls); test-fast leaves out the tests marked slow (pytest.ini), for the
# edit-test loop. README, Contributing: the times of both. Tests run in one process per core (pytest-xdist),
# at most 4: each holds its own TensorFlow (about 1-2 GiB); tests/conftest.py puts the longest first and
# has the workers share the rest by work stealing (--dist worksteal), so they end together.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses=4

test: install
	$(PYTEST) tests

test-fast: install
	$(PYTEST) tests -m "not slow"

demo: install
	$(PY) experiments/demo.py --demo_dir=$(DEMO_DIR)

rows: install
	$(PY) -m omg_cnnrnn.experiments --list

bench: install
	$(PY) experiments/bench_models.py

clean:
	rm -rf $(VENV) *.egg-info
