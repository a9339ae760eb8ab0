"""Lens distortion, a geometric condition: the image, the instance map, the depth, the
normals and the unoccluded masks are warped with one map, so every label moves with its pixels."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import register


def distortion_map(K: np.ndarray, dist: np.ndarray, width: int, height: int):
    """(map_x, map_y) float32: for each pixel of the distorted image, where to read in the
    undistorted (rendered) one. OpenCV's model, pixel centres at integers."""
    import cv2

    uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([uu.ravel(), vv.ravel()], axis=1)[:, None, :]
    und = cv2.undistortPoints(pts, K, dist, P=K).reshape(height, width, 2)
    return und[..., 0].astype(np.float32), und[..., 1].astype(np.float32)


@register("lens_distortion", "image", {"k1": [-0.35, 0.25], "k2": [-0.05, 0.05]}, moves_labels=True,
          bounds={"k1": (-1.0, 1.0), "k2": (-1.0, 1.0)})
def lens_distortion(frame, p, rng, scene):
    """Radial distortion (OpenCV k1, k2; negative k1 = barrel). The image metadata records
    `dist_coeffs` so the images can be undistorted with the stored K."""
    import cv2

    h, w = frame.instance.shape
    K = np.asarray(scene.camera.K, np.float64)
    dist = np.array([p["k1"], p["k2"], 0.0, 0.0, 0.0], np.float64)
    mx, my = distortion_map(K, dist, w, h)
    const = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    rgb = cv2.remap(frame.rgb, mx, my, cv2.INTER_LINEAR, **const)
    inst = cv2.remap(frame.instance.astype(np.float32), mx, my, cv2.INTER_NEAREST, **const).astype(np.int32)
    depth = cv2.remap(frame.depth, mx, my, cv2.INTER_NEAREST, **const)
    normals = None if frame.normals is None else cv2.remap(frame.normals, mx, my, cv2.INTER_NEAREST, **const)
    unocc = {i: cv2.remap(m.astype(np.uint8), mx, my, cv2.INTER_NEAREST, **const).astype(bool)
             for i, m in frame.unoccluded.items()}
    # The amodal canvas is not warped: truncation is kept from the undistorted render, and
    # amodal box and mask become the warped in-frame silhouette.
    trunc = {}
    for i, m in frame.unoccluded.items():
        crop = frame.amodal.get(i, (m, 0, 0))[0]
        total = int(crop.sum())
        trunc[i] = 1.0 - int(m.sum()) / total if total else 0.0
    amodal = {}
    for i, m in unocc.items():
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if len(rows):
            amodal[i] = (m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], int(cols[0]), int(rows[0]))
    out = replace(frame, rgb=rgb, instance=inst, depth=depth, normals=normals, unoccluded=unocc, amodal=amodal,
                  truncation={**trunc, **frame.truncation})
    return out, {"dist_coeffs": [round(float(v), 6) for v in dist]}
