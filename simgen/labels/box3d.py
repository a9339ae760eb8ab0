"""3D bounding box: the object's box in the OpenCV camera frame and its projection.

The box is the asset's model-frame bounding box (the model frame is centred on it, so it
contains every vertex of the mesh) at the object's scale, carried by the object's pose.

``box3d``: ``center`` (3,) and ``size`` (3,) in metres, ``R`` (3x3, model axes in the
camera frame: the columns are the box's x, y, z axes; ``size`` is along them),
``keypoints`` (9 x [u, v] pixels, pixel centres at integer coordinates as ``K`` and COCO
keypoints, through the image's lens distortion when it has one) and ``in_frame`` (9 flags:
in front of the camera and inside the frame). Point order (Objectron's): 0 the centre, then
the corners at (x, y, z) signs 1 (-,-,-), 2 (-,-,+), 3 (-,+,-), 4 (-,+,+), 5 (+,-,-),
6 (+,-,+), 7 (+,+,-), 8 (+,+,+); its edges are EDGES."""
from __future__ import annotations

import numpy as np

from . import Target, View, r, register

SIGNS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)  # corners 1..8
EDGES = ((1, 5), (2, 6), (3, 7), (4, 8), (1, 3), (5, 7), (2, 4), (6, 8), (1, 2), (3, 4), (5, 6), (7, 8))


def box_points(bounds: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(2,3) model-frame bounds at scale 1 and the object's (3,) scale -> (9,3) model-frame
    points: the centre, then the 8 corners in Objectron's order."""
    lo, hi = np.asarray(bounds, np.float64) * np.asarray(scale, np.float64)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    return np.vstack([centre, centre + SIGNS * half])


@register("box3d")
def box3d(view: View, t: Target) -> dict:
    try:
        bounds = view.bounds[t.obj.asset]
    except KeyError:
        raise ValueError(f"annotate.labels has box3d but asset '{t.obj.asset}' has no model bounds "
                         f"(pass bounds= to annotate)") from None
    m2c = view.w2c @ np.asarray(t.obj.pose, np.float64)
    pts = box_points(bounds, t.obj.scale)
    cam = pts @ m2c[:3, :3].T + m2c[:3, 3]
    uv = view.project(cam)
    size = (np.asarray(bounds[1], np.float64) - bounds[0]) * np.asarray(t.obj.scale, np.float64)
    return {"box3d": {"center": r(cam[0], 6), "size": r(size, 6), "R": r(m2c[:3, :3], 6),
                      "keypoints": r(uv, 3), "in_frame": [int(f) for f in view.in_frame(uv, cam[:, 2])]}}
