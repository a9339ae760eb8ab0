"""Output formats behind a small registry: adding a format means adding one module here.

Every writer receives the same in-memory Sample; the per-image buffers (images/, masks/,
depth/) are written once by :mod:`simgen.writers.buffers` for all formats.
"""
from __future__ import annotations

from typing import Callable, Dict

from . import coco

# name -> finalize(output_dir, parts, categories, info): builds the format's index files
# from the per-image parts after all images exist.
REGISTRY: Dict[str, Callable] = {"coco": coco.finalize}

__all__ = ["REGISTRY"]
