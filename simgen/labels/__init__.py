"""Optional labels of each annotation, behind a small registry: ``annotate.labels=[...]``
names the kinds to compute; each module here computes one kind from the rendered buffers
and the scene and returns the JSON fields it adds to the annotation record (pure numpy and
OpenCV). Adding a kind means adding one module here; docs/formats.md lists each kind's
fields. The semantic map is not here: it is a format (writers/semantic.py), made from the
mask PNG and the category table, so the two never disagree.

A kind is a function ``fn(view, target) -> dict`` registered with :func:`register`."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..spec import Frame, ObjectSpec, SceneSpec


@dataclass(frozen=True)
class View:
    """What every kind may read about one image. w2c: (4,4) world -> OpenCV camera;
    bounds: asset -> (2,3) float64 model-frame bounding box (min, max corners) in metres at
    object scale 1 (the asset's own scale applied); keypoints: asset -> (names, (K,3)
    model-frame metres at object scale 1, skeleton) or None (AssetLibrary.keypoints); dist:
    (5,) OpenCV distortion coefficients of the image when lens distortion fired, else None."""

    scene: SceneSpec
    frame: Frame
    w2c: np.ndarray
    bounds: Mapping[str, np.ndarray] = field(default_factory=dict)
    dist: Optional[np.ndarray] = None
    keypoints: Mapping[str, object] = field(default_factory=dict)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(N,3) camera-frame points (metres) -> (N,2) float64 pixels (u, v), pixel centres at
        integer coordinates (as K), through the image's lens distortion when it has one."""
        K = np.asarray(self.scene.camera.K, np.float64)
        p = np.asarray(points_cam, np.float64)
        if self.dist is None:
            z = np.where(np.abs(p[:, 2]) < 1e-12, 1e-12, p[:, 2])
            return (p[:, :2] / z[:, None]) @ K[:2, :2].T + K[:2, 2]
        import cv2

        uv, _ = cv2.projectPoints(p.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, np.asarray(self.dist, np.float64))
        return uv.reshape(-1, 2)

    def in_frame(self, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(N,) bool: in front of the camera and inside the frame (pixel centres at integers:
        the frame spans [-0.5, W - 0.5] x [-0.5, H - 0.5])."""
        cam = self.scene.camera
        return ((z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= cam.width - 0.5)
                & (uv[:, 1] >= -0.5) & (uv[:, 1] <= cam.height - 0.5))


@dataclass(frozen=True)
class Target:
    """One annotated object. mask: (H,W) bool visible pixels; bbox: its [x, y, w, h];
    alone: (H,W) bool pixels of the object rendered alone (in frame), a superset of mask;
    region: (r0, r1, c0, c1) rows and columns outside which ``alone`` is empty."""

    obj: ObjectSpec
    mask: np.ndarray
    bbox: Tuple[int, int, int, int]
    alone: np.ndarray
    region: Tuple[int, int, int, int]


LABELS: Dict[str, Callable[[View, Target], dict]] = {}


def register(name: str):
    """Register ``fn(view, target) -> dict`` as the label kind ``name``."""
    def wrap(fn):
        LABELS[name] = fn
        return fn

    return wrap


def compute(names: Sequence[str], view: View, target: Target) -> dict:
    """The fields of the kinds ``names`` for one annotation, in the order named."""
    out: dict = {}
    for n in names:
        out.update(LABELS[n](view, target))
    return out


def r(a, nd: int = 4):
    """JSON-ready nested lists of ``a`` rounded to ``nd`` decimals."""
    return np.round(np.asarray(a, dtype=np.float64), nd).tolist()


for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")

KINDS = tuple(sorted(LABELS))
__all__ = ["KINDS", "LABELS", "Target", "View", "compute", "register"]
