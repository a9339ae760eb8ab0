"""`simgen preview`: a contact sheet of labeled images (boxes, mask outlines, class names,
visibility), optionally with amodal boxes, depth and the instance map side by side."""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np


def colorize_depth(depth_mm: np.ndarray) -> np.ndarray:
    import cv2

    d = depth_mm.astype(np.float32)
    valid = d > 0
    out = np.zeros(d.shape + (3,), np.uint8)
    if valid.any():
        lo, hi = np.percentile(d[valid], [1, 99])
        n = np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
        out = cv2.applyColorMap((255 * (1 - n)).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
        out[~valid] = 0
    return out


def colorize_instances(inst: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    lut = rng.integers(40, 256, size=(int(inst.max()) + 1, 3)).astype(np.uint8)
    lut[0] = 0
    return lut[inst]


def _image_with_index(index, i: int):
    """(image, annotations) of the image whose ``index`` is i: at position i in a whole
    dataset, else searched for (a shard's or a hand-edited file)."""
    if 0 <= i < len(index) and index[i][0].get("index", i) == i:
        return index[i]
    return next((index[k] for k in range(len(index)) if index[k][0].get("index") == i), None)


def contact_sheet(dataset: str, n: int = 16, indices: Optional[List[int]] = None, seed: int = 0,
                  amodal: bool = False, depth: bool = False, instances: bool = False,
                  cols: Optional[int] = None) -> np.ndarray:
    """Grid of ``cols`` images per row (default: 4, or fewer when panels are added)."""
    from .draw import draw_labels, grid
    from .io import read_png
    from .writers.coco import open_index

    index = open_index(dataset, "give the annotations.json of a COCO dataset")  # nothing loaded
    cats = {c["id"]: c["name"] for c in index.categories}
    if indices is None:
        chosen = [index[int(k)] for k in sorted(np.random.default_rng(seed).permutation(len(index))[:n])]
    else:
        chosen = []
        for i in indices:
            found = _image_with_index(index, i)
            if found is None:
                from .errors import SimGenError

                raise SimGenError(f"no image with index {i} in {dataset} (it has {len(index)} images)")
            chosen.append(found)
    tiles = []
    for im, anns in chosen:
        rgb = read_png(os.path.join(dataset, "images", im["file_name"]))
        if not im.get("mask_file"):
            from .errors import SimGenError

            raise SimGenError(f"image {im['file_name']} in {dataset} has no mask_file: preview draws simgen's "
                              f"instance masks (fix: preview a dataset simgen wrote)")
        inst = read_png(os.path.join(dataset, im["mask_file"])).astype(np.int64)
        anns = [dict(a, category=cats[a["category_id"]]) for a in anns]
        row = [draw_labels(rgb, inst, anns, amodal=amodal)]
        if depth and im.get("depth_file"):
            row.append(colorize_depth(read_png(os.path.join(dataset, im["depth_file"]))))
        if instances:
            row.append(colorize_instances(inst))
        tiles.append(np.hstack(row))
    h, w = tiles[0].shape[:2]
    panels = 1 + int(depth) + int(instances)
    scale = min(1.0, 240.0 / h)
    return grid(tiles, cols or max(1, 4 // panels), tile=(int(round(w * scale)), int(round(h * scale))))
