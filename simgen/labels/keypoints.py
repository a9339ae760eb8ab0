"""Keypoints: the asset's named 3D keypoints (declared in its manifest entry or sidecar, or a
primitive's built-in set: a box's corners, the tips of cones, cylinders and capsules),
projected into the image, each with a COCO visibility flag.

``keypoints``: COCO's flat ``[x1, y1, v1, ...]`` in the order of the class's
``categories[].keypoints`` (pixel centres at integer coordinates, as ``K`` and COCO; through
the image's lens distortion when it has one): ``v`` = 2 visible, 1 inside the frame but
hidden (by another object or by the object itself: see :func:`visibility`), 0 outside the
frame or behind the camera, with
x = y = 0 as COCO wants. ``num_keypoints``: how many have v > 0. Objects of a class without
keypoints get ``[]`` and 0."""
from __future__ import annotations

import numpy as np

from . import Target, View, register

DEPTH_TOLERANCE = (0.001, 1.0)  # metres + pixel footprints (depth / fx): the surface a point lies on, rasterized


def visibility(view: View, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(N,) int COCO flags of camera-frame points at pixels ``uv`` and depths ``z``: 0 outside
    the frame or behind the camera; 1 when every pixel of the 3x3 patch around the point
    shows a surface nearer than the point by more than DEPTH_TOLERANCE (another object, or
    the object's own front); 2 otherwise. (The patch keeps a point on a silhouette edge
    visible; a point within a pixel of an occluder's edge counts as visible.)"""
    inside = view.in_frame(uv, z)
    depth = view.frame.depth
    h, w = depth.shape
    if not len(uv):
        return np.zeros(0, np.int64)
    step = np.array([-1, 0, 1])
    u = np.clip(np.rint(uv[:, 0]).astype(np.int64)[:, None, None] + step[None, None, :], 0, w - 1)
    v = np.clip(np.rint(uv[:, 1]).astype(np.int64)[:, None, None] + step[None, :, None], 0, h - 1)
    d = depth[v, u].reshape(len(uv), 9)  # (N, 9): the patch's depths (0: nothing drawn)
    fx = float(np.asarray(view.scene.camera.K)[0, 0])
    tol = (DEPTH_TOLERANCE[0] + DEPTH_TOLERANCE[1] * np.abs(z) / fx)[:, None]
    seen = ((d == 0) | (d >= z[:, None] - tol)).any(axis=1)
    return np.where(inside, np.where(seen, 2, 1), 0)


@register("keypoints")
def keypoints(view: View, t: Target) -> dict:
    kp = view.keypoints.get(t.obj.asset)
    if kp is None:  # a class without keypoints (COCOeval still reads the two fields)
        return {"keypoints": [], "num_keypoints": 0}
    names, pts, _ = kp
    if pts is None:  # an asset without keypoints in a class that has them
        return {"keypoints": [0] * (3 * len(names)), "num_keypoints": 0}
    m2c = view.w2c @ np.asarray(t.obj.pose, np.float64)
    cam = (np.asarray(pts, np.float64) * np.asarray(t.obj.scale, np.float64)) @ m2c[:3, :3].T + m2c[:3, 3]
    uv = view.project(cam)
    flags = visibility(view, uv, cam[:, 2])
    flat = []
    for (x, y), f in zip(uv, flags):
        flat += [round(float(x), 2), round(float(y), 2), int(f)] if f else [0, 0, 0]
    return {"keypoints": flat, "num_keypoints": int(np.count_nonzero(flags))}
