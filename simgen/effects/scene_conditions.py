"""Scene-stage conditions: they change the settled scene (camera, lights, occluders) so the
hard case is rendered, and labels come out of the render as for any scene."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..geometry import look_at, pose_matrix, random_rotation
from ..spec import LightSpec, ObjectSpec, _frozen
from . import register


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation taking unit vector a to unit vector b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else -np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


@register("small_objects", "scene", {"distance_factor": [2.0, 4.0]},
          bounds={"distance_factor": (1.0, 100.0)})
def small_objects(scene, p, rng, ctx):
    """Move the camera back along its optical axis: the pile is `distance_factor` times as far."""
    pose = np.array(scene.camera.pose)
    eye, fwd = pose[:3, 3], pose[:3, 2]
    dist = max(float(np.dot(-eye, fwd)), 0.1)  # distance to the scene centre along the axis
    pose[:3, 3] = eye - fwd * dist * (float(p["distance_factor"]) - 1.0)
    return replace(scene, camera=replace(scene.camera, pose=_frozen(pose)))


@register("truncation", "scene", {})
def truncation(scene, p, rng, ctx):
    """Turn the camera so that the centre of a random labeled object lands on a random
    point of the image border: that object is cut about in half by the frame."""
    labeled = scene.labeled
    if not labeled:
        return scene
    cam = scene.camera
    K, pose = np.asarray(cam.K), np.array(cam.pose)
    target = labeled[int(rng.integers(len(labeled)))]
    side = int(rng.integers(4))
    t = rng.uniform(0.2, 0.8)
    u = [-0.5, cam.width - 0.5, t * cam.width, t * cam.width][side]
    v = [t * cam.height, t * cam.height, -0.5, cam.height - 0.5][side]
    want = np.linalg.inv(K) @ [u, v, 1.0]  # camera-frame ray to the border point
    have = pose[:3, :3].T @ (target.pose[:3, 3] - pose[:3, 3])  # camera-frame ray to the object
    pose[:3, :3] = pose[:3, :3] @ _rotation_between(want, have)
    return replace(scene, camera=replace(cam, pose=_frozen(pose)))


@register("hard_shadows", "scene", {"intensity": [3.0, 6.0], "elevation_deg": [20.0, 50.0], "ambient": 0.02},
          bounds={"intensity": (0.0, None), "elevation_deg": (1.0, 90.0), "ambient": (0.0, None)})
def hard_shadows(scene, p, rng, ctx):
    """One strong low directional light and almost no ambient: long, dark shadows."""
    az = rng.uniform(0, 2 * math.pi)
    el = math.radians(float(p["elevation_deg"]))
    eye = 3.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    pose = look_at(eye, [0.0, 0.0, 0.0]) @ np.diag([1.0, -1.0, -1.0, 1.0])
    light = LightSpec("directional", _frozen(pose), _frozen([1.0, 0.97, 0.92], np.float32),
                      float(p["intensity"]), shadows=True)
    return replace(scene, lights=(light,), ambient=float(p["ambient"]))


@register("occlusion", "scene", {"occluders": [1, 3], "fraction": [0.35, 0.75], "size": [0.04, 0.1]},
          bounds={"occluders": (0, 64), "fraction": (0.05, 0.95), "size": (0.001, None)})
def occlusion(scene, p, rng, ctx):
    """Unlabeled occluders floating between the camera and random labeled objects, at
    `fraction` of the way from the object to the camera, `size` metres across."""
    labeled = scene.labeled
    assets = [n for n in ctx.all_assets.names if ctx.all_assets.assets[n].primitive in ("box", "sphere", "cylinder")]
    if not labeled or not assets:
        return scene
    eye = np.asarray(scene.camera.pose)[:3, 3]
    extra = []
    next_id = min([o.instance_id for o in scene.objects] + [0]) - 1
    for k in range(int(p["occluders"])):
        target = labeled[int(rng.integers(len(labeled)))]
        c = target.pose[:3, 3]
        pos = c + (eye - c) * float(rng.uniform(*_pair(p["fraction"])))
        name = assets[int(rng.integers(len(assets)))]
        radius = float(np.linalg.norm(ctx.all_assets.visual_mesh(name).vertices, axis=1).max())
        s = float(p["size"]) / (2 * radius)
        color = _frozen([*rng.uniform(0.15, 0.85, 3), 1.0], np.float32)
        extra.append(ObjectSpec(instance_id=next_id - k, asset=name, category="occluder",
                                pose=_frozen(pose_matrix(random_rotation(rng), pos)),
                                scale=_frozen([s, s, s]), color=color, roughness=0.7))
    return replace(scene, objects=scene.objects + tuple(extra))


def _pair(v):
    return (float(v), float(v)) if not isinstance(v, (list, tuple)) else (float(v[0]), float(v[1]))
