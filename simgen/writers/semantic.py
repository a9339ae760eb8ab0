"""Semantic segmentation: ``semantic/<name>.png``, each pixel the COCO ``category_id`` of
the object it shows, 0 for background and unlabeled geometry, and ``ignore`` (255; 65535
in 16-bit maps) for an object with no annotation record (left out by
``annotate.filtered=drop``). 8-bit when every category id is below 255, else 16-bit.
Made from the mask PNG and the annotations' ``instance_id`` -> ``category_id``, so it
equals the instance map mapped through the categories, pixel for pixel (objects filtered
as ``ignore`` keep their class). ``semantic/semantic_classes.json`` has the id, name and
a display colour of each class, background and ignore."""
from __future__ import annotations

import colorsys
import json
import os
from typing import Optional

import numpy as np

from ..errors import SimGenError
from . import register
from .common import Exporter, read_mask

CLASSES_FILE = "semantic_classes.json"


def semantic_map(inst: np.ndarray, anns: list, dtype, ignore: Optional[int] = None) -> np.ndarray:
    """(H,W) ``dtype`` class ids of the (H,W) instance map ``inst``: each annotation's
    ``instance_id`` -> its ``category_id``, 0 -> 0, any other id -> ``ignore`` (default: the
    dtype's maximum)."""
    lut = np.full(int(inst.max(initial=0)) + 1, np.iinfo(dtype).max if ignore is None else ignore, dtype)
    lut[0] = 0
    for a in anns:
        if a["instance_id"] < lut.size:
            lut[a["instance_id"]] = a["category_id"]
    return lut[inst]


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct display colours (hues a golden angle apart)."""
    return np.array([[round(255 * v) for v in colorsys.hsv_to_rgb((0.1 + k * 0.618034) % 1.0, 0.75, 0.95)]
                     for k in range(n)], np.uint8).reshape(-1, 3)


@register("semantic")
class Semantic(Exporter):
    folder = "semantic"

    def begin(self, coco) -> None:
        super().begin(coco)
        top = max((int(c["id"]) for c in self.categories), default=0)
        if top >= 65535:
            raise SimGenError(f"category id {top} does not fit a 16-bit semantic map (fix: renumber the categories "
                              f"below 65535)")
        self.dtype = np.uint8 if top < 255 else np.uint16
        self.ignore = int(np.iinfo(self.dtype).max)

    def image(self, img: dict, anns: list) -> None:
        from ..io import encode_png

        sem = semantic_map(read_mask(self.dataset, img), anns, self.dtype)
        name = os.path.splitext(img["file_name"])[0]
        with open(os.path.join(self.tmp, f"{name}.png"), "wb") as f:
            f.write(encode_png(sem, labels=True))

    def end(self) -> str:
        colours = palette(len(self.categories))
        doc = {"encoding": f"{np.dtype(self.dtype).itemsize * 8}-bit PNG, pixel = COCO category_id",
               "background": 0, "ignore": self.ignore,
               "classes": [{"id": 0, "name": "background", "color": [0, 0, 0]}]
               + [{"id": int(c["id"]), "name": c["name"], "color": colours[k].tolist()}
                  for k, c in enumerate(self.categories)]
               + [{"id": self.ignore, "name": "ignore", "color": [255, 255, 255]}]}
        with open(os.path.join(self.tmp, CLASSES_FILE), "w") as f:
            json.dump(doc, f, indent=1)
        return super().end()
