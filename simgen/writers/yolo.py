"""Ultralytics YOLO layout: ``yolo/images/{split}/``, ``yolo/labels/{split}/<name>.txt``
(``class cx cy w h`` normalised to [0, 1]; with segments, ``class x1 y1 x2 y2 ...``; with obb,
Ultralytics' OBB task: ``class x1 y1 x2 y2 x3 y3 x4 y4``, the corners of the visible mask's
minimum-area rotated rectangle, clipped to the frame; with pose, Ultralytics' pose task:
``class cx cy w h x1 y1 v1 ...``, every class padded to the most keypoints any class has,
``kpt_shape`` in data.yaml), and ``yolo/data.yaml``. Ignored (filtered) objects are left out. Segments: the outer boundary
of each part; several parts are joined into one polygon by zero-width bridges between
their closest points (holes are not represented)."""
from __future__ import annotations

import os
from typing import List

import numpy as np

from ..errors import SimGenError
from ..labels.obb import mask_obb
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
        self.obb = bool(self.options.get("yolo_obb", False))
        self.pose = bool(self.options.get("yolo_pose", False))
        if self.segments + self.obb + self.pose > 1:
            raise SimGenError("YOLO labels hold one kind: segments, oriented boxes or keypoints (fix: ask for one)")
        self.nkpt = max((len(c.get("keypoints") or []) for c in self.categories), default=0)
        if self.pose and not self.nkpt:
            raise SimGenError("YOLO pose labels need keypoints, and no class of this dataset has any (fix: make it "
                              "with annotate.labels=[keypoints] and assets that have keypoints: docs/formats.md)")
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
        inst = read_mask(self.dataset, img) if self.segments or (
            self.obb and any("obb_corners" not in a for a in anns)) else None
        lines = []
        for a in anns:
            if a.get("ignore"):
                continue
            c = self.cat_index[a["category_id"]]
            if self.obb:
                if "obb_corners" in a:
                    xy = np.asarray(a["obb_corners"], np.float64).reshape(4, 2)
                else:
                    xy = mask_obb(inst == a["instance_id"], tuple(a["bbox"]))[1]
                xy = xy / [W, H]  # corners lie on pixel edges: no half-pixel shift
                lines.append(f"{c} " + " ".join(f"{v:.6f}" for v in np.clip(xy, 0, 1).ravel()))
            elif self.segments:
                poly = mask_polygon(inst == a["instance_id"])
                if len(poly) < 3:
                    continue
                # contour points are pixel indices: pixel k spans [k, k+1], centre k + 0.5
                xy = (poly + 0.5) / [W, H]
                lines.append(f"{c} " + " ".join(f"{v:.6f}" for v in np.clip(xy, 0, 1).ravel()))
            else:
                x, y, w, h = a["bbox"]  # pixel k spans [k, k+1]: the box edges are x and x + w
                line = f"{c} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}"
                if self.pose:
                    kp = np.zeros((self.nkpt, 3))
                    own = np.asarray(a.get("keypoints") or [], np.float64).reshape(-1, 3)
                    kp[:len(own)] = own
                    seen = kp[:, 2] > 0  # COCO keypoints have pixel centres at integers: +0.5 to edges
                    kp[seen, :2] = np.clip((kp[seen, :2] + 0.5) / [W, H], 0, 1)
                    line += "".join(f" {u:.6f} {v:.6f} {int(f)}" for u, v, f in kp)
                lines.append(line)
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
                    f"{splits}nc: {len(self.categories)}\nnames:\n{names}\n"
                    + (f"kpt_shape: [{self.nkpt}, 3]\n" if self.pose else ""))
        return super().end()
