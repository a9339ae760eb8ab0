"""Atomic file writes: write a temporary file in the same folder, fsync-free, then rename."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np


def atomic_write_bytes(path: str, data: bytes) -> None:
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: str, obj, indent=None) -> None:
    text = json.dumps(obj, indent=indent, sort_keys=False, separators=(",", ":") if indent is None else None)
    atomic_write_bytes(path, text.encode("utf-8"))


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """Lossless PNG bytes of (H,W) uint8/uint16 or (H,W,3) uint8 RGB (stored as RGB)."""
    import cv2

    arr = image[..., ::-1] if image.ndim == 3 else image  # OpenCV wants BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def read_png(path: str) -> np.ndarray:
    """Read a PNG written by :func:`encode_png` (RGB order, bit depth kept)."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return img[..., ::-1].copy() if img.ndim == 3 else img
