# simgen: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.simgen-core
STAMP  := $(VENV)/.simgen-installed

.PHONY: demo test lint test-fast bench bench-memory bench-transfer clean

# The main job needs simgen alone (make demo): no torch, Ray or Ultralytics.
$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# (setuptools warns on every editable install that a folder named like the package may
	# shadow it: ours is the package itself)
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e .
	touch $(CORE)

# Tests, examples and benchmarks: the extras, and Ultralytics (AGPL: never a simgen
# dependency). --no-deps keeps its opencv-python from replacing opencv-python-headless (see
# examples/train_yolo.py); the modules it imports come in the first command, so pip's
# resolver sees no half-installed package.
$(STAMP): $(CORE)
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e ".[dev,torch,ray]" psutil polars requests
	$(PY) -m pip install -q --no-deps ultralytics==8.4.190 ultralytics-thop torchvision==0.28.0
	touch $(STAMP)

demo: $(CORE)
	$(VENV)/bin/simgen num_images=50 output_dir=out/demo
	@echo "next: $(VENV)/bin/simgen preview out/demo      (a contact sheet of labeled images)"
	@echo "      $(VENV)/bin/simgen report out/demo       (statistics, coverage and quality flags, as HTML)"

test: $(STAMP) lint
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check simgen tests bench examples

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

bench: $(STAMP)
	$(PY) bench/bench.py
	$(PY) bench/templates.py
	$(PY) bench/effects.py
	$(PY) bench/labels.py

bench-memory: $(STAMP)
	$(PY) bench/memory.py

# Transfer benchmark (docs/transfer.md): Blender's bpy in a virtualenv of its own, never in .venv.
BPY_VENV ?= .venv-bpy
BPY_STAMP := $(BPY_VENV)/.bpy-installed
TRANSFER_ARGS ?=

$(BPY_STAMP): bench/transfer/requirements-bpy.txt
	python3.11 -m venv $(BPY_VENV)
	$(BPY_VENV)/bin/pip install -q -r bench/transfer/requirements-bpy.txt
	touch $(BPY_STAMP)

bench-transfer: $(STAMP) $(BPY_STAMP)
	$(PY) bench/transfer/run.py --bpy-python $(BPY_VENV)/bin/python $(TRANSFER_ARGS)

clean:
	rm -rf out build dist *.egg-info
