"""Sampling a SceneSpec from the config and (seed, image index[, attempt]) alone.

Each randomized factor draws from its own stream, ``default_rng([seed, index, factor])``
(plus the attempt number when a scene is resampled), so pinning one factor never changes
what the others sample. Placements: ``drop`` (above the floor or into a bin, for physics),
``shelf`` (on shelf boards), ``float`` (anywhere in front of the camera, no physics),
``coverage`` (in front of the camera, each class's orientations relative to the camera and
apparent sizes stratified over the dataset, no physics) and ``fixed`` (every value pinned in
the config).
"""
from __future__ import annotations

import math
import zlib
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .assets import AssetLibrary
from .config import FOLLOW_CAMERA
from .distributions import parse, sample_float, sample_int
from .geometry import intrinsics_from_fov, look_at, pose_matrix, project, random_rotation, rotation_from_unit_cube
from .seeds import FACTORS as _FACTORS
from .seeds import factor_rng
from .spec import CameraSpec, LightSpec, ObjectSpec, SceneSpec, StaticSpec, TextureSpec, _frozen
from .textures import hsv_to_rgb, kelvin_to_rgb, list_images

# OpenCV-style look-at -> a light frame (pyrender lights shine along their -z axis).
_LIGHT_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def scene_of(cfg, index: int) -> int:
    """The scene image ``index`` shows: camera.views_per_scene consecutive images share one
    (sampled and settled from (seed, scene) alone; the camera and effects from (seed, image))."""
    return int(index) // int(cfg.camera.views_per_scene)


@lru_cache(maxsize=None)
def _radius(library: AssetLibrary, name: str) -> float:
    """Bounding-sphere radius (metres, scale 1) of an asset about its model origin."""
    return float(np.linalg.norm(library.visual_mesh(name).vertices, axis=1).max())


# ---- object classes ------------------------------------------------------------------

BALANCE_BLOCK = 1024  # images per block of balanced slot numbers


class _BalancedCounts:
    """Per-block prefix sums of per-image object counts, so image i knows its slot numbers
    within its block of BALANCE_BLOCK images (slots are dealt to classes round-robin, in a
    fresh random order per round, from the block's first image on).

    Counts come from a stream of their own, independent of resampling attempts. Blocks keep
    the cost bounded: image i needs the counts of at most BALANCE_BLOCK - 1 images before it
    (~0.1 s once per block and process), not of all i before it, which a shard starting at
    image 10,000,000 would have spent ~20 minutes summing. Each block is balanced to within
    one object per class, so the dataset is to within one object per class and block.
    """

    def __init__(self):
        self._prefix: Dict[Tuple[int, str, int], List[int]] = {}

    def start(self, cfg, seed: int, index: int) -> Tuple[int, int]:
        """(block, first slot of image ``index`` within its block)."""
        block, first = divmod(int(index), BALANCE_BLOCK)
        key = (int(seed), repr(cfg.objects.count), block)
        pre = self._prefix.get(key)
        if pre is None:
            if len(self._prefix) >= 4:  # a process works through a few blocks at a time
                self._prefix.clear()
            pre = self._prefix[key] = [0]
        base = block * BALANCE_BLOCK
        while len(pre) <= first:
            pre.append(pre[-1] + object_count(cfg, seed, base + len(pre) - 1))
        return block, pre[first]


_BALANCE = _BalancedCounts()


def object_count(cfg, seed: int, index: int) -> int:
    return sample_int(cfg.objects.count, factor_rng(seed, index, "count"), "objects.count")


def _choose_assets(cfg, library: AssetLibrary, seed: int, index: int, n: int, rng: np.random.Generator) -> List[str]:
    cats = library.categories
    by_cat = {c: [a for a in library.names if library.assets[a].category == c] for c in cats}
    if cfg.objects.balance or cfg.objects.placement == "coverage":
        block, start = _BALANCE.start(cfg, seed, index)
        out = []
        for j in range(n):
            g = start + j
            perm = np.random.default_rng([int(seed), _FACTORS["balance"], block, g // len(cats)]).permutation(len(cats))
            cat = cats[int(perm[g % len(cats)])]
            names = by_cat[cat]
            out.append(names[int(rng.random() * len(names)) % len(names)])
        return out
    weights = np.array([float(cfg.objects.class_weights.get(library.assets[a].category, 1.0))
                        / len(by_cat[library.assets[a].category]) for a in library.names])
    if weights.sum() <= 0:
        from .errors import ConfigError

        raise ConfigError("objects.class_weights give every class weight 0 (fix: give one class a positive weight)")
    cdf = np.cumsum(weights) / weights.sum()
    return [library.names[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)]
            for _ in range(n)]


# ---- materials, textures, colours ----------------------------------------------------

def _texture_spec(kind: str, colors, scale: float, rng: np.random.Generator, image_dir: Optional[str],
                  what: str, dir_key: str) -> Optional[TextureSpec]:
    """A TextureSpec for ``kind`` ('none'/'solid' give None); ``what`` names the config key
    that chose it and ``dir_key`` the key that names its image folder (for errors)."""
    seed = int(rng.integers(0, 2**31 - 1))
    angle = float(rng.uniform(0, 180))
    if kind in ("none", "solid"):
        return None
    path = None
    if kind == "image":
        if not image_dir:
            from .errors import ConfigError

            raise ConfigError(f"{what}=image needs an image folder (fix: set {dir_key}=/path/to/images)")
        files = list_images(image_dir, dir_key)
        path = files[int(rng.integers(len(files)))]
    return TextureSpec(kind=kind, colors=_frozen(colors, np.float32), scale=float(scale), seed=seed,
                       angle_deg=angle, path=path)


# appearance=jitter on a declared colour: hue shift, saturation and value factors (uniform)
COLOR_JITTER = {"hue": 0.02, "saturation": (0.8, 1.1), "value": (0.65, 1.15)}


def declared_color(asset, appearance: str, key: list) -> np.ndarray:
    """(4,) float32 RGBA: the asset's declared colour, as it is (appearance keep) or jittered
    in HSV (jitter) by a stream of its own (``key``: seed, index, object slot), so jitter
    never shifts the draws of the materials stream."""
    import colorsys

    c = np.asarray(asset.color, np.float64)
    if appearance == "keep":
        return _frozen(c, np.float32)
    rng = np.random.default_rng([*(int(v) % 2**32 for v in key), _FACTORS["materials"], 0xC010])
    h, s, v = colorsys.rgb_to_hsv(*c[:3])
    j = COLOR_JITTER
    h = (h + rng.uniform(-j["hue"], j["hue"])) % 1.0
    s = min(1.0, s * rng.uniform(*j["saturation"]))
    v = min(1.0, v * rng.uniform(*j["value"]))
    return _frozen([*colorsys.hsv_to_rgb(h, s, v), c[3]], np.float32)


def _material(mc, rng: np.random.Generator):
    """(color (4,), metallic, roughness, texture) from materials config; fixed draw count."""
    rgb = hsv_to_rgb(sample_float(mc.hue, rng), sample_float(mc.saturation, rng), sample_float(mc.value, rng))
    rgb2 = hsv_to_rgb(sample_float(mc.hue, rng), sample_float(mc.saturation, rng), sample_float(mc.value, rng))
    metallic = sample_float(mc.metallic, rng, "materials.metallic")
    roughness = sample_float(mc.roughness, rng, "materials.roughness")
    kind = _categorical(mc.texture, rng, "materials.texture")
    scale = sample_float(mc.texture_scale, rng, "materials.texture_scale")
    tex = _texture_spec(kind, [rgb, rgb2], scale, rng, mc.texture_dir, "materials.texture", "materials.texture_dir")
    return _frozen([*rgb, 1.0], np.float32), metallic, roughness, tex


def _categorical(spec, rng: np.random.Generator, name: str) -> str:
    from .distributions import _plain

    spec = _plain(spec)
    if isinstance(spec, (list, tuple)):
        spec = {"choice": list(spec)}
    return str(parse(name, spec).sample(rng))


# ---- placement -----------------------------------------------------------------------

def _support_regions(cfg) -> List[Tuple[np.ndarray, np.ndarray, float]]:
    """(xy_min, xy_max, z_top) rectangles objects are dropped onto (drop/shelf placements)."""
    ct = cfg.container
    if cfg.objects.placement == "shelf":
        w, d = ct.size
        return [(np.array([-w / 2, -d / 2]), np.array([w / 2, d / 2]), k * ct.level_height + ct.thickness)
                for k in range(ct.levels)]
    if ct.kind == "bin":
        w, d = ct.size
        return [(np.array([-w / 2, -d / 2]), np.array([w / 2, d / 2]), 0.0)]
    r = cfg.objects.spawn_radius
    return [(np.array([-r, -r]), np.array([r, r]), 0.0)]


def container_statics(cfg, rng: np.random.Generator) -> Tuple[StaticSpec, ...]:
    """Bin walls or shelf boards as unlabeled boxes (colour from ``rng``)."""
    ct = cfg.container
    if ct.kind == "none":
        return ()
    g = rng.uniform(0.3, 0.8)
    color = _frozen([*(np.clip(g * rng.uniform(0.8, 1.2, 3), 0, 1)), 1.0], np.float32)
    t = ct.thickness
    w, d = ct.size
    boxes = []
    if ct.kind == "bin":
        h = ct.wall_height
        boxes = [("wall+x", [t, d + 2 * t, h], [w / 2 + t / 2, 0, h / 2]),
                 ("wall-x", [t, d + 2 * t, h], [-w / 2 - t / 2, 0, h / 2]),
                 ("wall+y", [w, t, h], [0, d / 2 + t / 2, h / 2]),
                 ("wall-y", [w, t, h], [0, -d / 2 - t / 2, h / 2])]
    else:  # shelf: boards at each level, two side panels and a back panel
        top = ct.levels * ct.level_height
        boxes = [(f"board{k}", [w, d, t], [0, 0, k * ct.level_height + t / 2]) for k in range(1, ct.levels)]
        boxes += [("side+x", [t, d, top], [w / 2 + t / 2, 0, top / 2]),
                  ("side-x", [t, d, top], [-w / 2 - t / 2, 0, top / 2]),
                  ("back", [w + 2 * t, t, top], [0, d / 2 + t / 2, top / 2])]
    return tuple(StaticSpec(name=n, extents=_frozen(e), pose=_frozen(pose_matrix(np.eye(3), c)), color=color)
                 for n, e, c in boxes)


SET_DOWN_GAP = 0.003  # metres above the support an object placed in a resting pose starts


def _drop_poses(cfg, radii: Sequence[float], rng: np.random.Generator, stable: Sequence = (),
                srng: Optional[np.random.Generator] = None) -> List[np.ndarray]:
    """Non-overlapping starting poses above the support regions: each object tries up to
    ``objects.spread_tries`` positions and starts from the lowest free one, above the objects
    its bounding sphere overlaps there. Lower starts mean shorter falls and fewer towers
    toppling, the bulk of the physics steps. ``stable``: per object (its upright rotation
    or None, its stable poses or None: AssetLibrary.upright, .stable_poses). With
    probability ``objects.upright_share`` an object that says which axis is up starts
    standing as made; with ``objects.stable_pose_share`` in one of its stable resting poses
    (drawn by probability); both turned about the vertical at random; else (or lacking
    either) in a uniformly random orientation. Those choices come from ``srng``, a stream of
    their own: the shares never shift the positions drawn from ``rng``."""
    regions = _support_regions(cfg)
    disk = cfg.container.kind == "none" and cfg.objects.placement == "drop"  # a disk, not a square
    tries = int(cfg.objects.spread_tries)
    placed: List[Tuple[int, np.ndarray, float, float]] = []  # (region, xy, z, radius)
    poses = []
    for r in radii:
        lift = sample_float(cfg.objects.drop_height, rng, "objects.drop_height")
        best = None
        for _ in range(tries):
            k = int(rng.integers(len(regions)))
            lo, hi, ztop = regions[k]
            if disk:
                rr = cfg.objects.spawn_radius * math.sqrt(rng.random())
                phi = rng.uniform(0, 2 * math.pi)
                xy = np.array([rr * math.cos(phi), rr * math.sin(phi)])
            else:
                margin = np.minimum(r, (hi - lo) / 2 * 0.999)
                xy = rng.uniform(lo + margin, hi - margin)
            free = z = ztop + r + lift
            alone = True  # no other object's sphere above this spot
            for pk, pxy, pz, pr in placed:
                if pk == k and math.hypot(xy[0] - pxy[0], xy[1] - pxy[1]) < r + pr:  # (not numpy: 2-vectors)
                    z, alone = max(z, pz + pr + r + 1e-3), False
            # lowest above its own support: shelf levels stand at different heights
            if best is None or z - ztop < best[3]:
                best = (k, xy, z, z - ztop, alone)
            if z == free:  # nothing below it but the support
                break
        k, xy, z, _, alone = best
        placed.append((k, xy, z, r))
        R = random_rotation(rng)
        upright, poses_i, hull = stable[len(poses)] if len(poses) < len(stable) else (None, None, None)
        placed_in = None
        if srng is not None:
            u, pick, yaw = srng.random(), srng.random(), srng.uniform(0, 2 * math.pi)  # always three draws
            c, sn = math.cos(yaw), math.sin(yaw)
            turn = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]])
            up_share = float(cfg.objects.upright_share)
            if upright is not None and u < up_share:
                R = placed_in = turn @ upright
            elif poses_i is not None and u < up_share + float(cfg.objects.stable_pose_share):
                rot, prob = poses_i
                j = min(int(np.searchsorted(np.cumsum(prob), pick * prob.sum(), side="right")), len(prob) - 1)
                R = placed_in = turn @ rot[j]
        if placed_in is not None and alone:  # on the support itself, nothing below or beside:
            # set down a few mm above it, not dropped from its bounding sphere's height (a mug
            # that falls 10 cm upright bounces over)
            z = regions[k][2] + float(np.max(-(hull @ placed_in.T)[:, 2])) + min(lift, SET_DOWN_GAP)
        if cfg.objects.placement == "shelf":  # standing: yaw only
            yaw = math.atan2(R[1, 0], R[0, 0])
            R = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1.0]])
        poses.append(pose_matrix(R, [xy[0], xy[1], z]))
    return poses


def _free_spot(camera: CameraSpec, Kinv: np.ndarray, r: float, placed: List[Tuple[np.ndarray, float]],
               rng: np.random.Generator, depth) -> np.ndarray:
    """A point in front of the camera on a random pixel's ray at ``depth()`` metres along the
    optical axis, retried (bounded) until its sphere of radius ``r`` misses the ``placed``
    ones; recorded in ``placed``. Per try: two pixel draws, then ``depth()``."""
    for _ in range(50):
        u = rng.uniform(0.05, 0.95) * camera.width
        v = rng.uniform(0.05, 0.95) * camera.height
        d = depth()
        ray = Kinv @ [u, v, 1.0]
        p = camera.pose[:3, :3] @ (ray / ray[2] * d) + camera.pose[:3, 3]
        if all(np.linalg.norm(p - q) >= r + qr for q, qr in placed):
            break
    placed.append((p, r))
    return p


def _float_poses(cfg, camera: CameraSpec, radii: Sequence[float], rng: np.random.Generator) -> List[np.ndarray]:
    """Poses spread through the camera's view at float_distance, avoiding overlaps (bounded)."""
    Kinv = np.linalg.inv(camera.K)
    placed: List[Tuple[np.ndarray, float]] = []
    poses = []
    for r in radii:
        p = _free_spot(camera, Kinv, r, placed, rng,
                       lambda: sample_float(cfg.objects.float_distance, rng, "objects.float_distance"))
        poses.append(pose_matrix(random_rotation(rng), p))
    return poses


# placement=coverage: per (seed, class, balance block), a scrambled Sobol sequence in 4
# dimensions: 3 give the orientation relative to the camera (Shoemake's map), 1 the size.
COVERAGE_DIMS = 4


@lru_cache(maxsize=64)
def _coverage_points(seed: int, category: str, block: int, m: int) -> np.ndarray:
    """The first 2**m points (2**m, COVERAGE_DIMS) of the class's sequence in this block (a
    larger m gives the same points first: a Sobol sequence's prefix does not depend on how
    many are drawn)."""
    from scipy.stats import qmc

    eng = qmc.Sobol(COVERAGE_DIMS, scramble=True,
                    seed=np.random.default_rng([int(seed), _FACTORS["coverage"], zlib.crc32(category.encode()),
                                                int(block)]))
    return eng.random_base2(m)


def coverage_point(seed: int, category: str, block: int, rank: int) -> np.ndarray:
    """Point ``rank`` of the class's stratified sequence in balance block ``block``: the
    class's rank-th object in the block (classes are dealt round-robin, so each class's
    objects take consecutive points, and any 2**k consecutive ones from the start cover the
    unit cube evenly)."""
    m = max(6, int(rank).bit_length())
    return _coverage_points(int(seed), category, int(block), m)[int(rank)]


def coverage_ranks(cfg, library: AssetLibrary, seed: int, index: int, n: int) -> Tuple[int, List[int]]:
    """(block, per object slot of image ``index``: its class's rank within the block)."""
    block, start = _BALANCE.start(cfg, seed, index)
    return block, [(start + j) // len(library.categories) for j in range(n)]


def _coverage_poses(cfg, camera: CameraSpec, radii: Sequence[float], points: Sequence[np.ndarray],
                    rng: np.random.Generator) -> List[np.ndarray]:
    """Each object turned to the camera by its point's rotation (so its model-to-camera
    rotation is that rotation) at the distance where its bounding sphere spans its point's
    share of the image's shorter side (log-uniform over objects.coverage_size); centred on
    a random pixel, retried (bounded) away from the objects placed before it."""
    lo, hi = (float(v) for v in cfg.objects.coverage_size)
    f = float(camera.K[1, 1])
    short = min(camera.width, camera.height)
    Kinv = np.linalg.inv(camera.K)
    placed: List[Tuple[np.ndarray, float]] = []
    poses = []
    for r, pt in zip(radii, points):
        share = math.exp(math.log(lo) + float(pt[3]) * (math.log(hi) - math.log(lo)))
        d = max(2 * r * f / (share * short), float(camera.znear) + r)
        p = _free_spot(camera, Kinv, r, placed, rng, lambda d=d: d)
        poses.append(pose_matrix(np.asarray(camera.pose)[:3, :3] @ rotation_from_unit_cube(*pt[:3]), p))
    return poses


def _euler_deg(angles) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [float(a) for a in angles], degrees=True).as_matrix()


# ---- camera and lights ---------------------------------------------------------------

def scene_centre(cfg) -> np.ndarray:
    ct = cfg.container
    if ct.kind == "shelf":
        return np.array([0.0, 0.0, ct.levels * ct.level_height / 2])
    if ct.kind == "bin":
        return np.array([0.0, 0.0, ct.wall_height / 2])
    return np.zeros(3)


def sample_camera(cfg, rng: np.random.Generator, object_size: Optional[float] = None) -> CameraSpec:
    """A camera from camera.* (the same draws, in the same order, whatever is set). With
    camera.object_share and ``object_size`` (the scene's typical object diameter, metres:
    framed_size), the distance is the one at which that size spans the drawn share of
    the image's shorter side, instead of a draw from camera.distance."""
    cc = cfg.camera
    fov = sample_float(cc.fov_deg, rng, "camera.fov_deg")
    by_size = cc.object_share is not None and object_size is not None and object_size > 0
    if by_size:  # in camera.distance's place in the stream: the other draws stay as they are
        share = sample_float(cc.object_share, rng, "camera.object_share")
    else:
        dist = sample_float(cc.distance, rng, "camera.distance")
    el = math.radians(sample_float(cc.elevation_deg, rng, "camera.elevation_deg"))
    az = math.radians(sample_float(cc.azimuth_deg, rng, "camera.azimuth_deg"))
    roll = math.radians(sample_float(cc.roll_deg, rng, "camera.roll_deg"))
    jitter = rng.uniform(-1.0, 1.0, 3) * cc.look_at_jitter
    focal = None if cc.focal_length_px is None else sample_float(cc.focal_length_px, rng, "camera.focal_length_px")
    width, height = int(cc.width), int(cc.height)
    res = parse("camera.resolution", cc.resolution).sample(rng) if cc.resolution is not None else None
    if res is not None:  # drawn last, so the other camera draws do not depend on it
        width, height = int(res[0]), int(res[1])
    K = intrinsics_from_fov(width, height, fov)
    if focal is not None:
        K[0, 0] = K[1, 1] = focal
    if by_size:
        dist = float(K[1, 1]) * float(object_size) / (share * min(width, height))
    if cc.position is not None:
        eye, target = np.array(cc.position, float), np.array(cc.look_at, float)
    else:
        target = scene_centre(cfg) + jitter
        target[2] = max(target[2], 0.0)
        eye = target + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    pose = look_at(eye, target)
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        pose = pose @ np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    return CameraSpec(width=width, height=height, K=_frozen(K), pose=_frozen(pose),
                      znear=float(cc.znear), zfar=float(cc.zfar))


def framed_size(cfg, library: AssetLibrary, objects: Sequence[Tuple[str, float]]) -> Optional[float]:
    """What camera.object_share frames: the median bounding-sphere diameter (metres) of the
    scene's labeled objects, given as (asset, scale) pairs; None when the camera is placed by
    camera.distance (no object_share, a placement whose objects follow the camera, no object)."""
    if cfg.camera.object_share is None or cfg.objects.placement in FOLLOW_CAMERA or not objects:
        return None
    return float(np.median([2 * _radius(library, a) * float(sc) for a, sc in objects]))


def labeled_sizes(scene: SceneSpec) -> List[Tuple[str, float]]:
    """(asset, scale) of a scene's labeled objects (framed_size's input)."""
    return [(o.asset, float(o.scale[0])) for o in scene.objects if o.labeled]


def objects_in_view(camera: CameraSpec, objects: Sequence[ObjectSpec]) -> int:
    """Number of labeled objects whose centre projects inside the image, in front of the camera."""
    pts = np.array([o.pose[:3, 3] for o in objects if o.labeled]).reshape(-1, 3)
    if not len(pts):
        return 0
    uv, z = project(np.asarray(camera.K), np.asarray(camera.pose), pts)
    inside = (z > camera.znear) & (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1) & \
        (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1)
    return int(inside.sum())


def _sample_lights(cfg, rng: np.random.Generator):
    lc = cfg.lights
    lights = []
    if lc.fixed:
        for f in lc.fixed:
            target = f.get("look_at", [0.0, 0.0, 0.0])
            pose = look_at(list(f.position), list(target)) @ _LIGHT_FLIP
            color = kelvin_to_rgb(float(f.get("temperature_k", 6500.0)))
            lights.append(LightSpec(kind=str(f.kind), pose=_frozen(pose), color=_frozen(color, np.float32),
                                    intensity=float(f.get("intensity", 2.0)),
                                    shadows=bool(f.get("shadows", True)) and f.kind != "point"))
        return tuple(lights), sample_float(lc.ambient, rng, "lights.ambient")
    n = sample_int(lc.count, rng, "lights.count")
    centre = scene_centre(cfg)
    for _ in range(n):
        kind = _categorical(lc.types, rng, "lights.types")
        az = rng.uniform(0, 2 * np.pi)
        el = np.radians(sample_float(lc.elevation_deg, rng, "lights.elevation_deg"))
        dist = sample_float(lc.distance, rng, "lights.distance")
        eye = centre + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        pose = look_at(eye, centre) @ _LIGHT_FLIP
        color = kelvin_to_rgb(sample_float(lc.temperature_k, rng, "lights.temperature_k"))
        key = "directional_intensity" if kind == "directional" else "point_intensity"
        intensity = sample_float(lc[key], rng, f"lights.{key}")
        shadows = rng.random() < float(lc.shadow_probability)  # drawn for every light
        lights.append(LightSpec(kind=kind, pose=_frozen(pose), color=_frozen(color, np.float32),
                                intensity=float(intensity), shadows=bool(shadows) and kind != "point"))
    ambient = sample_float(lc.ambient, rng, "lights.ambient")
    return tuple(lights), float(ambient)


# ---- the scene -----------------------------------------------------------------------

def sample_scene(cfg, library: AssetLibrary, seed: int, index: int, attempt: int = 0,
                 distractor_library: Optional[AssetLibrary] = None) -> SceneSpec:
    """Sample objects, distractors, fixed geometry, materials, lights, camera, floor and
    background for scene ``index`` (the image index unless camera.views_per_scene > 1: see
    scene_of). Drop poses never overlap at the start."""
    ob = cfg.objects
    rng_o = factor_rng(seed, index, "objects", attempt)
    rng_p = factor_rng(seed, index, "poses", attempt)
    rng_m = factor_rng(seed, index, "materials", attempt)
    specs: List[dict] = []
    if ob.placement == "fixed":
        for f in ob.fixed:
            s = float(f.get("scale", 1.0))
            specs.append({"asset": str(f.asset), "scale": s,
                          "pose": pose_matrix(_euler_deg(f.get("rotation_deg", [0, 0, 0])), list(f.position)),
                          "color": f.get("color")})
    else:
        n = object_count(cfg, seed, index)
        for name in _choose_assets(cfg, library, seed, index, n, rng_o):
            specs.append({"asset": name, "scale": sample_float(ob.scale, rng_o, "objects.scale")})
        if ob.placement == "coverage":
            block, ranks = coverage_ranks(cfg, library, seed, index, n)
            for sp, rank in zip(specs, ranks):
                sp["coverage"] = coverage_point(seed, library.assets[sp["asset"]].category, block, rank)
    # the camera (a stream of its own) after the objects are chosen, so that it can frame their size
    size = framed_size(cfg, library, [(sp["asset"], sp["scale"]) for sp in specs])
    camera = sample_camera(cfg, factor_rng(seed, index, "camera", attempt), size)
    objects = _build(cfg, library, specs, camera, rng_p, rng_m, seed, index, first_id=1)
    if distractor_library is not None:
        rng_d = factor_rng(seed, index, "distractors", attempt)
        m = sample_int(cfg.distractors.count, rng_d, "distractors.count")
        dspecs = [{"asset": distractor_library.names[int(rng_d.integers(len(distractor_library.names)))],
                   "scale": sample_float(cfg.distractors.scale, rng_d, "distractors.scale")} for _ in range(m)]
        objects += _build(cfg, distractor_library, dspecs, camera, rng_d, rng_d, seed, index, first_id=-1)
    lights, ambient = _sample_lights(cfg, factor_rng(seed, index, "lights", attempt))
    rng_b = factor_rng(seed, index, "background", attempt)
    fl = cfg.floor
    floor_rgb = hsv_to_rgb(rng_b.random(), sample_float(fl.saturation, rng_b), sample_float(fl.value, rng_b))
    floor_kind = _categorical(fl.texture, rng_b, "floor.texture")
    floor_tex = _texture_spec(floor_kind, [floor_rgb, hsv_to_rgb(rng_b.random(), sample_float(fl.saturation, rng_b),
                                                                 sample_float(fl.value, rng_b))],
                              sample_float(fl.texture_scale, rng_b), rng_b, cfg.materials.texture_dir, "floor.texture",
                              "materials.texture_dir")
    bc = cfg.background
    bg_rgb = hsv_to_rgb(rng_b.random(), sample_float(bc.saturation, rng_b), sample_float(bc.value, rng_b))
    bg_rgb2 = hsv_to_rgb(rng_b.random(), sample_float(bc.saturation, rng_b), sample_float(bc.value, rng_b))
    bg_kind = _categorical(bc.kind, rng_b, "background.kind")
    bg_tex = _texture_spec(bg_kind, [bg_rgb, bg_rgb2], sample_float(bc.scale, rng_b), rng_b, bc.image_dir,
                           "background.kind", "background.image_dir")
    statics = container_statics(cfg, rng_b)
    return SceneSpec(index=index, seed=seed, objects=tuple(objects), lights=lights, camera=camera,
                     ambient=ambient, floor_color=_frozen([*floor_rgb, 1.0], np.float32),
                     background_color=_frozen(bg_rgb, np.float32), floor_size=float(fl.size),
                     floor_enabled=bool(fl.enabled), floor_texture=floor_tex, background=bg_tex,
                     statics=statics, attempt=attempt)


def _build(cfg, library: AssetLibrary, specs: List[dict], camera: CameraSpec, rng_p, rng_m,
           seed: int, index: int, first_id: int) -> Tuple[ObjectSpec, ...]:
    ob = cfg.objects
    radii = [_radius(library, s["asset"]) * s["scale"] for s in specs]
    if ob.placement == "fixed" and first_id > 0:
        poses = [s["pose"] for s in specs]
    elif ob.placement == "coverage" and first_id > 0:
        poses = _coverage_poses(cfg, camera, radii, [s["coverage"] for s in specs], rng_p)
    elif ob.placement in FOLLOW_CAMERA:  # coverage: its distractors float at random
        poses = _float_poses(cfg, camera, radii, rng_p)
    else:
        share = float(ob.upright_share) + float(ob.stable_pose_share) if ob.placement == "drop" else 0.0
        stable = [(library.upright(s["asset"]) if ob.upright_share > 0 else None,
                   library.stable_poses(s["asset"]) if ob.stable_pose_share > 0 else None,
                   library.hull_points(s["asset"]) * s["scale"]) for s in specs] if share > 0 else []
        srng = np.random.default_rng([int(seed), int(index), _FACTORS["poses"], 0x57AB1E, int(first_id > 0)])
        poses = _drop_poses(cfg, radii, rng_p, stable, srng if share > 0 else None)
    out = []
    step = 1 if first_id > 0 else -1
    for k, (s, pose) in enumerate(zip(specs, poses)):
        name = s["asset"]
        asset = library.assets[name]
        color, metallic, roughness, tex = None, 0.0, 0.6, None
        if cfg.materials.per == "class":
            mrng = np.random.default_rng([int(seed), int(index), _FACTORS["materials"],
                                          zlib.crc32(asset.category.encode())])
        else:
            mrng = rng_m
        mat = _material(cfg.materials, mrng)  # always drawn: keeps the stream aligned
        if s.get("color") is not None:
            c = list(s["color"])
            color = _frozen([*c[:3], c[3] if len(c) > 3 else 1.0], np.float32)
        elif asset.color is not None and (asset.appearance or ob.appearance) in ("keep", "jitter"):
            color = declared_color(asset, asset.appearance or ob.appearance, [seed, index, first_id + step * k])
            metallic, roughness = mat[1], mat[2]
        elif ob.random_color and not library.has_own_colors(name):
            color, metallic, roughness, tex = mat
        out.append(ObjectSpec(instance_id=first_id + step * k, asset=name, category=asset.category,
                              pose=_frozen(pose), scale=_frozen([s["scale"]] * 3, np.float64), color=color,
                              metallic=float(metallic), roughness=float(roughness), texture=tex))
    return tuple(out)
