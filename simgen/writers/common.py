"""Helpers shared by exporters: splits, linking images, reading masks, atomic folders."""
from __future__ import annotations

import os
import shutil

import numpy as np

SPLITS = ("train", "val", "test")


def split_of(image: dict) -> str:
    return image.get("split", "train")


def link_or_copy(src: str, dst: str) -> None:
    """Hard link (no extra space) where the filesystem allows, else copy."""
    if os.path.exists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def fresh_dir(path: str) -> str:
    """A temporary sibling folder to build an export in; swap it in with :func:`commit_dir`."""
    tmp = path + ".tmp-export"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def commit_dir(tmp: str, path: str) -> None:
    """Replace ``path`` by the finished ``tmp`` folder (no half-written export is left)."""
    old = path + ".old-export"
    if os.path.isdir(path):
        os.replace(path, old)
    os.replace(tmp, path)
    if os.path.isdir(old):
        shutil.rmtree(old)


def read_mask(dataset: str, image: dict) -> np.ndarray:
    from ..io import read_png

    return read_png(os.path.join(dataset, image["mask_file"])).astype(np.int64)
