# simgen: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.simgen-installed

.PHONY: demo test test-fast bench bench-memory bench-transfer clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,torch,ray]"
	# Test/example environment only (AGPL Ultralytics is never a simgen dependency). --no-deps
	# keeps its opencv-python from replacing opencv-python-headless; see examples/train_yolo.py.
	$(PY) -m pip install -q --no-deps ultralytics==8.4.190 ultralytics-thop torchvision==0.28.0
	$(PY) -m pip install -q psutil polars requests
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
