# Set-up and entry points. VENV can point anywhere (CI keeps a cached one outside the clone).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP := $(VENV)/.rtml-installed

.PHONY: setup quickstart test test-integration test-slow validate bench

$(STAMP): pyproject.toml .ci/constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -c .ci/constraints.txt torch==2.13.0
	$(PIP) install -c .ci/constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)  ## the main job, end to end on embedded defaults
	$(VENV)/bin/rtml quickstart

test: $(STAMP)  ## the unit tests: CPU, no Ray, under 3 minutes on 2 cores — the loop to run while working
	PATH=$(abspath $(VENV))/bin:$$PATH pytest

test-integration: $(STAMP)  ## Ray Train/Tune, DeepSpeed, MLflow runs, long physics checks (~15 min)
	PATH=$(abspath $(VENV))/bin:$$PATH pytest -m "integration and not slow"

test-slow: $(STAMP)  ## ray job submit to a real head and a three-node cluster (~12 min)
	PATH=$(abspath $(VENV))/bin:$$PATH pytest -m slow

validate: $(STAMP)  ## long physics validation of the reference engine
	$(VENV)/bin/rtml validate-reference

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_train.py --store runs/quickstart/train.zarr
