"""Sampling a SceneSpec from the config and (seed, image index) alone.

Each randomized factor draws from its own stream, ``default_rng([seed, index, factor])``,
so pinning one factor never changes what the others sample.
"""
from __future__ import annotations

import numpy as np

from .assets import AssetLibrary
from .distributions import sample_float, sample_int
from .geometry import intrinsics_from_fov, look_at, pose_matrix, random_rotation
from .spec import CameraSpec, LightSpec, ObjectSpec, SceneSpec, _frozen

_FACTORS = {"objects": 1, "poses": 2, "lights": 3, "camera": 4, "materials": 5}


def factor_rng(seed: int, index: int, factor: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), _FACTORS[factor]])


def _bounding_radius(library: AssetLibrary, name: str, scale: float) -> float:
    mesh = library.visual_mesh(name)
    return float(np.linalg.norm(mesh.vertices, axis=1).max()) * scale


def sample_scene(cfg, library: AssetLibrary, seed: int, index: int) -> SceneSpec:
    """Sample objects (asset, scale, colour, drop pose), lights and camera for one image.

    Drop poses never overlap: each object starts above every earlier one whose bounding
    sphere it would touch in plan view, so physics starts from a valid state.
    """
    ob = cfg.objects
    rng_o = factor_rng(seed, index, "objects")
    rng_p = factor_rng(seed, index, "poses")
    rng_m = factor_rng(seed, index, "materials")
    n = sample_int(ob.count, rng_o, "objects.count")
    objects = []
    placed = []  # (xy, z, radius)
    for k in range(n):
        name = library.names[int(rng_o.integers(len(library.names)))]
        asset = library.assets[name]
        s = sample_float(ob.scale, rng_o, "objects.scale")
        radius = _bounding_radius(library, name, s)
        r = ob.spawn_radius * np.sqrt(rng_p.random())
        phi = rng_p.uniform(0, 2 * np.pi)
        xy = np.array([r * np.cos(phi), r * np.sin(phi)])
        z = radius + sample_float(ob.drop_height, rng_p, "objects.drop_height")
        for pxy, pz, pr in placed:
            if np.linalg.norm(xy - pxy) < radius + pr:
                z = max(z, pz + pr + radius + 1e-3)
        placed.append((xy, z, radius))
        R = random_rotation(rng_p)
        color = None
        if ob.random_color and not library.is_textured(name):
            hsv = (rng_m.random(), rng_m.uniform(0.35, 1.0), rng_m.uniform(0.35, 1.0))
            color = _frozen([*_hsv_to_rgb(*hsv), 1.0], np.float32)
        objects.append(ObjectSpec(instance_id=k + 1, asset=name, category=asset.category,
                                  pose=_frozen(pose_matrix(R, [xy[0], xy[1], z])),
                                  scale=_frozen([s, s, s], np.float64), color=color))
    lights, ambient = _sample_lights(cfg.lights, factor_rng(seed, index, "lights"))
    camera = _sample_camera(cfg.camera, factor_rng(seed, index, "camera"))
    g = rng_m.uniform(0.25, 0.75)
    floor = _frozen([*(g * rng_m.uniform(0.85, 1.15, 3)).clip(0, 1), 1.0], np.float32)
    bg = _frozen(_hsv_to_rgb(rng_m.random(), rng_m.uniform(0.0, 0.3), rng_m.uniform(0.2, 0.8)), np.float32)
    return SceneSpec(index=index, seed=seed, objects=tuple(objects), lights=lights,
                     camera=camera, ambient=ambient, floor_color=floor, background_color=bg)


def _hsv_to_rgb(h: float, s: float, v: float):
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _sample_lights(lc, rng: np.random.Generator):
    n = sample_int(lc.count, rng, "lights.count")
    types = list(lc.types)
    lights = []
    for _ in range(n):
        kind = types[int(rng.integers(len(types)))]
        az = rng.uniform(0, 2 * np.pi)
        el = np.radians(sample_float(lc.elevation_deg, rng, "lights.elevation_deg"))
        dist = sample_float(lc.distance, rng, "lights.distance")
        eye = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        # Light frames follow OpenGL (the light shines along its -z axis): flip a CV look-at.
        pose = look_at(eye, [0.0, 0.0, 0.0]) @ np.diag([1.0, -1.0, -1.0, 1.0])
        warm = rng.uniform(0.0, 1.0)
        color = np.array([1.0, 0.9 + 0.1 * warm, 0.8 + 0.2 * warm])
        key = "directional_intensity" if kind == "directional" else "point_intensity"
        intensity = sample_float(lc[key], rng, f"lights.{key}")
        lights.append(LightSpec(kind=kind, pose=_frozen(pose), color=_frozen(color, np.float32),
                                intensity=float(intensity), shadows=kind != "point"))
    ambient = sample_float(lc.ambient, rng, "lights.ambient")
    return tuple(lights), float(ambient)


def _sample_camera(cc, rng: np.random.Generator) -> CameraSpec:
    fov = sample_float(cc.fov_deg, rng, "camera.fov_deg")
    dist = sample_float(cc.distance, rng, "camera.distance")
    el = np.radians(sample_float(cc.elevation_deg, rng, "camera.elevation_deg"))
    az = np.radians(sample_float(cc.azimuth_deg, rng, "camera.azimuth_deg"))
    target = rng.uniform(-cc.look_at_jitter, cc.look_at_jitter, 3) if cc.look_at_jitter > 0 else np.zeros(3)
    target[2] = abs(target[2])
    eye = target + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    K = intrinsics_from_fov(cc.width, cc.height, fov)
    return CameraSpec(width=int(cc.width), height=int(cc.height), K=_frozen(K),
                      pose=_frozen(look_at(eye, target)), znear=float(cc.znear), zfar=float(cc.zfar))
