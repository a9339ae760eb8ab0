"""Ultralytics YOLO layout: ``yolo/images/{split}/``, ``yolo/labels/{split}/<name>.txt``
(``class cx cy w h`` normalised to [0, 1]; with segments, ``class x1 y1 x2 y2 ...``), and
``yolo/data.yaml``. Ignored (filtered) objects are left out. Segments: the outer boundary
of each part; several parts are joined into one polygon by zero-width bridges between
their closest points (holes are not represented)."""
from __future__ import annotations

import os
from typing import List

import numpy as np

from . import register
from .common import SPLITS, Exporter, link_or_copy, read_mask, split_of


def _contours(mask: np.ndarray) -> List[np.ndarray]:
    import cv2

    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) for c in cs if len(c) >= 3]


def mask_polygon(mask: np.ndarray) -> np.ndarray:
    """(N, 2) pixel polygon of a (possibly multi-part) mask, parts bridged in order."""
    parts = sorted(_contours(mask), key=lambda c: -len(c))
    if not parts:
        return np.zeros((0, 2))
    poly = parts[0]
    for part in parts[1:]:
        d = np.linalg.norm(poly[:, None, :] - part[None, :, :], axis=2)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        # walk poly to i, jump to part[j], go round part, come back to poly[i], continue
        poly = np.vstack([poly[:i + 1], np.roll(part, -j, axis=0), part[j:j + 1], poly[i:]])
    return poly


@register("yolo")
class Yolo(Exporter):
    folder = "yolo"

    def begin(self, coco) -> None:
        super().begin(coco)
        self.segments = bool(self.options.get("yolo_segments", False))
        self.cat_index = {c["id"]: k for k, c in enumerate(self.categories)}
        self._used = set()

    def image(self, img: dict, anns: list) -> str:
        split = split_of(img)
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(self.tmp, sub, split), exist_ok=True)
        name = os.path.splitext(img["file_name"])[0]
        link_or_copy(os.path.join(self.dataset, "images", img["file_name"]),
                     os.path.join(self.tmp, "images", split, img["file_name"]))
        W, H = img["width"], img["height"]
        inst = read_mask(self.dataset, img) if self.segments else None
        lines = []
        for a in anns:
            if a.get("ignore"):
                continue
            c = self.cat_index[a["category_id"]]
            if self.segments:
                poly = mask_polygon(inst == a["instance_id"])
                if len(poly) < 3:
                    continue
                # contour points are pixel indices: pixel k spans [k, k+1], centre k + 0.5
                xy = (poly + 0.5) / [W, H]
                lines.append(f"{c} " + " ".join(f"{v:.6f}" for v in np.clip(xy, 0, 1).ravel()))
            else:
                x, y, w, h = a["bbox"]  # pixel k spans [k, k+1]: the box edges are x and x + w
                lines.append(f"{c} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}")
        with open(os.path.join(self.tmp, "labels", split, f"{name}.txt"), "w") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        return split

    def collect(self, split: str) -> None:
        self._used.add(split)

    def end(self) -> str:
        names = "\n".join(f"  {k}: {c['name']}" for k, c in enumerate(self.categories))
        splits = "".join(f"{s}: images/{s}\n" for s in SPLITS if s in self._used)
        if "val" not in self._used:  # Ultralytics needs a val entry: validate on train when there is none
            splits += "val: images/train\n"
        with open(os.path.join(self.tmp, "data.yaml"), "w") as f:
            f.write("# Ultralytics dataset written by simgen. Paths are relative to this file.\n"
                    f"{splits}nc: {len(self.categories)}\nnames:\n{names}\n")
        return super().end()
