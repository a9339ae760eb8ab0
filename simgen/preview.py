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


def contact_sheet(dataset: str, n: int = 16, indices: Optional[List[int]] = None, seed: int = 0,
                  amodal: bool = False, depth: bool = False, instances: bool = False,
                  cols: Optional[int] = None) -> np.ndarray:
    """Grid of ``cols`` images per row (default: 4, or fewer when panels are added)."""
    from .draw import draw_labels, grid
    from .io import read_png
    from .report import load

    coco = load(dataset)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    images = coco["images"]
    if indices is None:
        pick = np.random.default_rng(seed).permutation(len(images))[:n]
        chosen = [images[int(k)] for k in sorted(pick)]
    else:
        by_index = {im["index"]: im for im in images}
        missing = [i for i in indices if i not in by_index]
        if missing:
            from .errors import SimGenError

            raise SimGenError(f"no image with index {missing[0]} in {dataset} (it has 0..{len(images) - 1})")
        chosen = [by_index[i] for i in indices]
    tiles = []
    for im in chosen:
        rgb = read_png(os.path.join(dataset, "images", im["file_name"]))
        inst = read_png(os.path.join(dataset, im["mask_file"])).astype(np.int64)
        anns = [dict(a, category=cats[a["category_id"]]) for a in coco["annotations"] if a["image_id"] == im["id"]]
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
