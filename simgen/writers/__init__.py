"""Output formats behind a small registry: adding a format means adding one module here.

COCO (``annotations.json``) is canonical: it is assembled from the per-image parts after
every image exists. Every other format is an *exporter* that reads the finished COCO
dataset (and the mask PNGs) and writes its own files, so several formats come from one
render, and ``simgen export`` converts an existing dataset without rendering again.
Each exporter module calls :func:`register` at import time.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict

# name -> export(dataset_dir, coco.Coco (one image at a time), options) -> folder written
EXPORTERS: Dict[str, Callable] = {}


def register(name: str):
    def wrap(fn):
        EXPORTERS[name] = fn
        return fn

    return wrap


for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")

FORMATS = ("coco", *sorted(EXPORTERS))
__all__ = ["EXPORTERS", "FORMATS", "register"]
