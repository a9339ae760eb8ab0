"""Frozen runtime data exchanged between pipeline stages (no backend imports here).

Conventions: metres; poses are 4x4 float64 homogeneous transforms; camera poses are
camera-to-world in the OpenCV frame (x right, y down, z forward); quaternions are xyzw.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

import numpy as np


def _frozen(a, dtype=None) -> np.ndarray:
    arr = np.array(a, dtype=dtype, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class TextureSpec:
    """A procedural or file image. kind: 'noise' | 'checker' | 'stripes' | 'gradient' |
    'image'; colors: (2, 3) float32 RGB in [0, 1]; scale: pattern repeats per metre (objects)
    or per image (backgrounds); seed: the pattern's own seed; path: for kind 'image'."""

    kind: str
    colors: np.ndarray
    scale: float = 10.0
    seed: int = 0
    angle_deg: float = 0.0
    path: Optional[str] = None


@dataclass(frozen=True)
class ObjectSpec:
    """One object instance.

    instance_id: unique per image; >= 1 for labeled objects (their value in the instance
    map), <= -1 for distractors (unlabeled: drawn as 0 in the instance map, still occlude).
    pose: (4, 4) float64 object-to-world transform, metres.
    scale: (3,) float64 multiplier applied to the asset's mesh in metres (model frame).
    color: (4,) float32 RGBA base colour in [0, 1], or None to keep the asset's texture.
    metallic, roughness: PBR factors in [0, 1] (ignored when the asset keeps its texture).
    texture: a procedural/file texture mapped with box projection, or None.
    """

    instance_id: int
    asset: str
    category: str
    pose: np.ndarray
    scale: np.ndarray
    color: Optional[np.ndarray] = None
    metallic: float = 0.0
    roughness: float = 0.6
    texture: Optional[TextureSpec] = None

    @property
    def labeled(self) -> bool:
        return self.instance_id >= 1

    def with_pose(self, pose: np.ndarray) -> "ObjectSpec":
        return replace(self, pose=_frozen(pose, np.float64))


@dataclass(frozen=True)
class LightSpec:
    """kind: 'directional' | 'point' | 'spot'; pose: (4,4) light-to-world (OpenGL: light looks
    along its -z axis); color: (3,) linear RGB in [0,1]; intensity: lux (directional) or candela."""

    kind: str
    pose: np.ndarray
    color: np.ndarray
    intensity: float
    shadows: bool = True


@dataclass(frozen=True)
class CameraSpec:
    """Pinhole camera. K: (3,3) OpenCV intrinsics in pixels (pixel centres at integer
    coordinates); pose: (4,4) camera-to-world, OpenCV axes; znear/zfar in metres."""

    width: int
    height: int
    K: np.ndarray
    pose: np.ndarray
    znear: float = 0.01
    zfar: float = 30.0


@dataclass(frozen=True)
class StaticSpec:
    """Unlabeled fixed geometry (bin walls, shelf boards): a box. extents (3,) metres;
    pose (4,4) box-to-world; color (4,) RGBA. Occludes, casts shadows, collides."""

    name: str
    extents: np.ndarray
    pose: np.ndarray
    color: np.ndarray


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to simulate and render one image, sampled from (seed, index)."""

    index: int
    seed: int
    objects: Tuple[ObjectSpec, ...]
    lights: Tuple[LightSpec, ...]
    camera: CameraSpec
    ambient: float = 0.2
    floor_color: np.ndarray = field(default_factory=lambda: _frozen([0.5, 0.5, 0.5, 1.0], np.float32))
    background_color: np.ndarray = field(default_factory=lambda: _frozen([0.0, 0.0, 0.0], np.float32))
    floor_size: float = 4.0  # metres, square, top surface at z = 0
    floor_enabled: bool = True
    floor_texture: Optional[TextureSpec] = None
    background: Optional[TextureSpec] = None  # None: solid background_color
    statics: Tuple[StaticSpec, ...] = ()
    attempt: int = 0  # resampling round that produced this scene (0 = first)

    @property
    def labeled(self) -> Tuple[ObjectSpec, ...]:
        return tuple(o for o in self.objects if o.labeled)

    def with_object_poses(self, poses: Dict[int, np.ndarray]) -> "SceneSpec":
        objs = tuple(o.with_pose(poses[o.instance_id]) if o.instance_id in poses else o
                     for o in self.objects)
        return replace(self, objects=objs)


@dataclass(frozen=True)
class SettleReport:
    """Outcome of physics: converged within max_steps, steps taken, final max speeds."""

    converged: bool
    steps: int
    max_linear_velocity: float
    max_angular_velocity: float
    below_floor: Tuple[int, ...] = ()  # instance ids whose centre ended below the floor

    fell_off: Tuple[int, ...] = ()  # left the support area (floor, bin)
    exploded: bool = False  # some body exceeded the explosion speed
    interpenetrating: Tuple[int, ...] = ()  # objects in contacts deeper than the tolerance
    attempts: int = 1  # scenes sampled to get this one (resampled after failed checks)

    @property
    def valid(self) -> bool:
        return (self.converged and not self.below_floor and not self.fell_off and not self.exploded
                and not self.interpenetrating)

    def as_dict(self) -> dict:
        return {"converged": bool(self.converged), "steps": int(self.steps), "attempts": int(self.attempts),
                "exploded": bool(self.exploded), "fell_off": [int(i) for i in self.fell_off],
                "interpenetrating": [int(i) for i in self.interpenetrating],
                "max_linear_velocity": round(float(self.max_linear_velocity), 6),
                "max_angular_velocity": round(float(self.max_angular_velocity), 6),
                "below_floor": [int(i) for i in self.below_floor]}


@dataclass(frozen=True)
class Frame:
    """Rendered buffers of one image.

    rgb: (H, W, 3) uint8. depth: (H, W) float32 metres along the optical axis, 0 = no
    surface. instance: (H, W) int32 instance ids, 0 = background / unlabeled geometry.
    unoccluded: instance id -> (H, W) bool mask of the object rendered alone (in frame).
    amodal: instance id -> (crop, x0, y0): the object rendered alone on a canvas reaching
    past the frame; crop is its tight bool mask, (x0, y0) its top-left pixel in image
    coordinates (negative or beyond W/H where the object leaves the frame).
    normals: (H, W, 3) uint8 or None (render.write_normals): the unit surface normal in the
    OpenCV camera frame, facing the camera, as round((n + 1) / 2 * 255) per axis (decode:
    value / 127.5 - 1); (0, 0, 0) where no surface is drawn, exactly where depth is 0.
    """

    rgb: np.ndarray
    depth: np.ndarray
    instance: np.ndarray
    unoccluded: Dict[int, np.ndarray]
    amodal: Dict[int, tuple] = field(default_factory=dict)
    truncation: Dict[int, float] = field(default_factory=dict)  # measured before a geometric warp
    normals: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Annotation:
    """One visible labeled object. bbox is [x, y, w, h] of the visible mask (w = x_max -
    x_min + 1); rle is a COCO RLE dict with str counts; visibility in [0, 1]."""

    instance_id: int
    category: str
    bbox: Tuple[int, int, int, int]
    area: int
    rle: dict
    visibility: float
    unoccluded_area: int
    pose_m2w: np.ndarray
    pose_m2c: np.ndarray
    scale: np.ndarray
    asset: str
    truncation: float = 0.0  # fraction of the object's silhouette outside the frame
    amodal_bbox: Tuple[int, int, int, int] = (0, 0, 0, 0)  # whole silhouette, may leave the frame
    amodal_rle: Optional[dict] = None  # silhouette within the frame (occluders ignored)
    difficulty: str = "easy"  # easy | moderate | hard | beyond_hard
    ignore: bool = False  # below a configured filter: COCOeval should skip it
    extra: Dict[str, object] = field(default_factory=dict)  # the annotate.labels kinds' JSON fields (labels/)
