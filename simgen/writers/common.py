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


def export_tmp(path: str) -> str:
    """Where the export that will replace ``path`` is built."""
    return path + ".tmp-export"


def fresh_dir(path: str) -> str:
    """A temporary sibling folder to build an export in (:func:`export_tmp`, empty); swap it
    in with :func:`commit_dir`."""
    tmp = export_tmp(path)
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
    """(H,W) int64 instance ids of the image's mask PNG (a simgen dataset's ``mask_file``)."""
    from ..errors import SimGenError
    from ..io import read_png

    if not image.get("mask_file"):
        raise SimGenError(f"image {image.get('file_name')} has no mask_file, and this output is made from simgen's "
                          f"instance mask PNGs (fix: ask for it from a dataset simgen wrote)")
    return read_png(os.path.join(dataset, image["mask_file"])).astype(np.int64)


class Exporter:
    """One output format written from the finished COCO records, one image at a time.

    The main process makes it and calls ``begin(coco)`` (``coco``: the records, re-iterable,
    for formats that need a look at the whole dataset first). ``image(img, anns)`` writes one
    image's files into ``self.tmp`` and returns a small picklable summary. It runs where the
    records are read: in the main process, or for large datasets in the processes that read
    the part files, on a copy of the exporter taken after ``begin`` (attributes named with a
    leading '_' are the main process's and are not copied). The main process hands each
    summary to ``collect`` in image-index order; ``end`` writes what spans images and swaps
    the finished folder in (no half-written export is left); ``discard`` drops it after an
    error."""

    folder = ""  # the format's folder inside the dataset

    def __init__(self, dataset: str, categories: list, options: dict):
        self.dataset, self.categories, self.options = dataset, categories, dict(options)
        self.out = os.path.join(dataset, self.folder)
        self.tmp = export_tmp(self.out)

    def begin(self, coco) -> None:
        fresh_dir(self.out)

    def image(self, img: dict, anns: list):
        return None

    def collect(self, summary) -> None:
        pass

    def end(self) -> str:
        commit_dir(self.tmp, self.out)
        return self.out

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
