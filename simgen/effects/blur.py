"""Blur conditions. Rule for labels: masks and boxes show each object at mid-exposure (in
focus). Both kernels are symmetric about their centre, so an object's blurred colour stays
centred on its mask; the blurred fringe outside the mask is not labeled."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import register


def _filter(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import cv2

    out = cv2.filter2D(rgb.astype(np.float32), -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Odd-sized, centre-symmetric line of `length` pixels at `angle_deg`."""
    n = int(math.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    a = math.radians(angle_deg)
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2 * n, 2)):
        k[int(round(c + t * math.sin(a))), int(round(c + t * math.cos(a)))] = 1.0
    return k


def disk_kernel(radius: float) -> np.ndarray:
    n = int(math.ceil(radius)) * 2 + 1
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    return (xx * xx + yy * yy <= radius * radius + 1e-6).astype(np.float32)


@register("motion_blur", "image", {"length": [5.0, 21.0], "angle_deg": [0.0, 180.0]},
          bounds={"length": (1.0, 255.0)})
def motion_blur(frame, p, rng, scene):
    """Linear motion blur of `length` pixels at `angle_deg` (camera shake during exposure)."""
    return replace(frame, rgb=_filter(frame.rgb, line_kernel(float(p["length"]), float(p["angle_deg"])))), {}


@register("defocus", "image", {"radius": [1.5, 5.0]},
          bounds={"radius": (0.0, 64.0)})
def defocus(frame, p, rng, scene):
    """Out-of-focus blur: a disk (circle of confusion) of `radius` pixels."""
    return replace(frame, rgb=_filter(frame.rgb, disk_kernel(float(p["radius"])))), {}
