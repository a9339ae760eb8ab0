"""Per-image buffers: images/<name>.png (RGB8), masks/<name>.png (16-bit instance ids),
depth/<name>.png (16-bit millimetres, 0 = no surface or farther than 65.535 m),
normals/<name>.png (RGB8 camera-frame normals as (n + 1) / 2, 0 = no surface; Frame.normals)."""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..dataset import IMAGE_DIRS
from ..io import encode_png
from ..spec import Frame

DEPTH_SCALE = 0.001  # metres per depth PNG unit
SUBDIRS = IMAGE_DIRS


def depth_to_u16(depth: np.ndarray) -> np.ndarray:
    """(H,W) float32 metres -> (H,W) uint16 millimetres, rounded; out of range -> 0."""
    mm = np.divide(depth, DEPTH_SCALE, dtype=np.float64)  # one pass: no float64 copy first
    np.rint(mm, out=mm)
    mm[~((mm >= 0) & (mm <= 65535))] = 0  # NaN fails both comparisons
    return mm.astype(np.uint16)


def encode_buffers(name: str, frame: Frame, compression: int, write_depth: bool) -> Dict[str, bytes]:
    """The image's PNG files as {path relative to output_dir: bytes} (images, masks, depth)."""
    if frame.instance.max(initial=0) > 65535:
        raise ValueError("more than 65535 instances in one image cannot be stored in a 16-bit mask")
    files = {f"images/{name}.png": encode_png(frame.rgb, compression),
             f"masks/{name}.png": encode_png(frame.instance.astype(np.uint16), compression, labels=True)}
    if write_depth:
        files[f"depth/{name}.png"] = encode_png(depth_to_u16(frame.depth), compression)
    if frame.normals is not None:
        files[f"normals/{name}.png"] = encode_png(frame.normals, compression)
    return files


def file_roles(files: Dict[str, bytes]) -> Dict[str, str]:
    """{"image": ..., "mask": ..., "depth": ..., "normals": ...} paths of :func:`encode_buffers`' output."""
    roles = {"images": "image", "masks": "mask", "depth": "depth", "normals": "normals"}
    return {roles[p.split("/", 1)[0]]: p for p in files}
