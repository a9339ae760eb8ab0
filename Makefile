# simgen: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.simgen-installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,torch]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/simgen num_images=50 output_dir=out/demo

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

bench: $(STAMP)
	$(PY) bench/bench.py
	$(PY) bench/templates.py
	$(PY) bench/effects.py

clean:
	rm -rf out build dist *.egg-info
