"""Oriented 2D box: the minimum-area rotated rectangle of the visible mask (OpenCV's
``minAreaRect``), around the pixel squares (pixel k spans [k, k+1], as ``bbox``), so an
axis-aligned object gets exactly its ``bbox``.

``obb``: ``[cx, cy, w, h, angle]``, w >= h, angle in degrees in [0, 180) ([0, 90) for a square): the direction of
the long side, from +x towards +y (clockwise on screen, image y points down); Ultralytics'
``xywhr`` convention with the angle in degrees. ``obb_corners``: its 4 corners
``[x1, y1, ..., x4, y4]``, clockwise on screen from the corner the long side leaves."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from . import Target, View, r, register

_SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)


def mask_obb(mask: np.ndarray, bbox: Tuple[int, int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(H,W) bool mask and its bbox -> ((5,) cx, cy, w, h, angle_deg; (4,2) corners)."""
    import cv2

    x, y, w, h = bbox
    crop = np.ascontiguousarray(mask[y:y + h, x:x + w], dtype=np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pts = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float32)
    # The hull of the pixel squares: every contour pixel's four corners.
    rect = cv2.minAreaRect((pts[:, None, :] + _SQUARE[None]).reshape(-1, 2))
    (cx, cy), corners = rect[0], cv2.boxPoints(rect).astype(np.float64)
    edges = np.roll(corners, -1, axis=0) - corners
    lengths = np.linalg.norm(edges, axis=1)
    k = int(np.argmax(lengths[:2]))  # edges 0 and 1 are adjacent: one long, one short (or equal)
    # a square (equal sides as written, to 3 decimals) is the same turned by 90 degrees
    period = 90.0 if round(float(lengths[0]), 3) == round(float(lengths[1]), 3) else 180.0
    angle = float(np.degrees(np.arctan2(edges[k][1], edges[k][0])) % period)
    if angle > period - 1e-9:
        angle = 0.0
    # Corners clockwise on screen (y down) starting where the long side leaves.
    d = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    n = np.array([-d[1], d[0]])  # +90 degrees: clockwise on screen
    long_, short = float(lengths[k]), float(lengths[1 - k])
    c = np.array([cx, cy], np.float64) + [x, y]
    start = c - d * long_ / 2 - n * short / 2
    out = np.array([start, start + d * long_, start + d * long_ + n * short, start + n * short])
    return np.array([c[0], c[1], long_, short, angle]), out


@register("obb")
def obb(view: View, t: Target) -> dict:
    box, corners = mask_obb(t.mask, t.bbox)
    return {"obb": r(box, 3), "obb_corners": r(corners.ravel(), 3)}
