"""Per-image buffers: images/<name>.png (RGB8), masks/<name>.png (16-bit instance ids),
depth/<name>.png (16-bit millimetres, 0 = no surface or farther than 65.535 m)."""
from __future__ import annotations

import os

import numpy as np

from ..io import atomic_write_bytes, encode_png
from ..spec import Frame

DEPTH_SCALE = 0.001  # metres per depth PNG unit
SUBDIRS = ("images", "masks", "depth")


def depth_to_u16(depth: np.ndarray) -> np.ndarray:
    """(H,W) float32 metres -> (H,W) uint16 millimetres, rounded; out of range -> 0."""
    mm = np.rint(depth.astype(np.float64) / DEPTH_SCALE)
    mm[(mm < 0) | (mm > 65535) | ~np.isfinite(mm)] = 0
    return mm.astype(np.uint16)


def write_buffers(output_dir: str, name: str, frame: Frame, compression: int, write_depth: bool) -> dict:
    """Write the PNGs atomically; return their paths relative to output_dir."""
    if frame.instance.max(initial=0) > 65535:
        raise ValueError("more than 65535 instances in one image cannot be stored in a 16-bit mask")
    files = {"image": f"images/{name}.png", "mask": f"masks/{name}.png"}
    atomic_write_bytes(os.path.join(output_dir, files["image"]), encode_png(frame.rgb, compression))
    atomic_write_bytes(os.path.join(output_dir, files["mask"]),
                       encode_png(frame.instance.astype(np.uint16), compression))
    if write_depth:
        files["depth"] = f"depth/{name}.png"
        atomic_write_bytes(os.path.join(output_dir, files["depth"]),
                           encode_png(depth_to_u16(frame.depth), compression))
    return files
