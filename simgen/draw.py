"""Drawing labels on images (OpenCV): boxes, mask outlines, class names, visibility."""
from __future__ import annotations

import zlib
from typing import Iterable, List, Sequence

import numpy as np


def class_color(name: str):
    """A stable, saturated BGR-free RGB colour per class name."""
    from .textures import hsv_to_rgb

    h = (zlib.crc32(name.encode()) % 360) / 360.0
    return tuple(int(255 * c) for c in hsv_to_rgb(h, 0.85, 1.0))


def draw_labels(rgb: np.ndarray, instance: np.ndarray, anns: Iterable[dict], amodal: bool = False) -> np.ndarray:
    """A copy of ``rgb`` (H,W,3 uint8) with each annotation's mask outline, box (dashed when
    ignored), class and visibility. ``anns``: COCO-style dicts with ``instance_id``,
    ``category`` (name), ``bbox``, ``visibility`` and optionally ``amodal_bbox``, ``ignore``."""
    import cv2

    out = np.ascontiguousarray(rgb[..., ::-1]).copy()  # BGR for OpenCV
    for a in anns:
        col = class_color(a["category"])[::-1]
        mask = (instance == a["instance_id"]).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, col, 1, cv2.LINE_AA)
        x, y, w, h = a["bbox"]
        thickness = 1 if a.get("ignore") else 2
        cv2.rectangle(out, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), col, thickness)
        if amodal and "amodal_bbox" in a:
            ax, ay, aw, ah = a["amodal_bbox"]
            cv2.rectangle(out, (int(ax), int(ay)), (int(ax + aw - 1), int(ay + ah - 1)), col, 1, cv2.LINE_4)
        label = f"{a['category']} {a.get('visibility', 1.0):.2f}"
        cv2.putText(out, label, (int(x), max(int(y) - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, col, 1, cv2.LINE_AA)
    return np.ascontiguousarray(out[..., ::-1])


def grid(images: Sequence[np.ndarray], cols: int, tile=(320, 240)) -> np.ndarray:
    """Images resized to ``tile`` (w, h) and laid out ``cols`` per row (RGB uint8)."""
    import cv2

    tiles: List[np.ndarray] = [cv2.resize(im, tile, interpolation=cv2.INTER_AREA) for im in images]
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)]
    return np.vstack(rows)
