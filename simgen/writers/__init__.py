"""Output formats behind a small registry: adding a format means adding one module here.

COCO (``annotations.json``) is canonical: it is assembled from the per-image parts after
every image exists. Every other format is an :class:`~.common.Exporter` that writes its own
files from the same records (and the mask PNGs), one image at a time, in the same pass
over the parts as COCO (in several processes for large datasets), so several formats come
from one render, and ``simgen export`` converts an existing dataset without rendering again.
Each exporter module calls :func:`register` at import time.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, List

from ..dataset import register_output

# name -> Exporter subclass: cls(dataset_dir, coco categories, options)
EXPORTERS: Dict[str, type] = {}


def register(name: str):
    def wrap(cls):
        EXPORTERS[name] = cls
        register_output(cls.folder, f"the {name} format (formats=[...] or simgen export)")
        return cls

    return wrap


def export(dataset: str, coco, formats: List[str], options: dict) -> List[str]:
    """Write ``formats`` (exporter names) from ``coco`` (a :class:`~.coco.Coco`) in this
    process, in one pass over its images; returns the folders written."""
    exporters = [EXPORTERS[f](dataset, coco.categories, options) for f in formats]
    try:
        for e in exporters:
            e.begin(coco)
        for img, anns in coco:
            for e in exporters:
                e.collect(e.image(img, anns))
        return [e.end() for e in exporters]
    finally:
        for e in exporters:
            e.discard()


for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")

FORMATS = ("coco", *sorted(EXPORTERS))
__all__ = ["EXPORTERS", "FORMATS", "export", "register"]
