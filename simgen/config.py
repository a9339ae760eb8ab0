"""Typed Hydra schema for a simgen run, config composition, and validation with one-line errors.

The schema below is registered in Hydra's ConfigStore as ``simgen_schema`` and is the base of
``configs/config.yaml``. Scene templates (``scenes/*.yaml``) are the Hydra config group
``scene`` and, as ``# @package _global_`` presets, set any of these keys. Command-line
overrides win over both.

Numeric values take a constant or a distribution (``simgen.distributions``): ``3``,
``[low, high]`` (uniform), ``{normal: [mean, std], min: a, max: b}``, ``{loguniform: [a, b]}``,
``{choice: [...], weights: [...]}``. Units: metres, kilograms, seconds; angles in degrees.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .errors import ConfigError
from .view import ConfigView, config_view  # noqa: F401 (re-exported: simgen.config.config_view)

SHADOW_FILTERS = ("bilinear", "pcf3x3")  # render.shadow_filter's values (render.py makes them)

# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------


def dist(default):
    """A field holding a distribution spec. Its default is filled in after composition
    (:func:`fill_defaults`): a None default lets a template or the command line put a list
    where the default is a number, or a dict where it is a list, without OmegaConf trying
    to merge the two."""
    return field(default=None, metadata={"dist_default": default})


@dataclass
class CameraConfig:
    width: int = 640  # pixels
    height: int = 480  # pixels
    resolution: Any = None  # per-image [width, height]: e.g. {choice: [[640, 480], [1280, 720]]}; overrides width/height
    fov_deg: Any = dist(50.0)  # vertical field of view, degrees; number or [low, high]
    distance: Any = dist([0.9, 1.5])  # metres from look-at point
    # instead of distance: the share of the image's shorter side that the scene's median
    # labeled object (its bounding sphere's diameter) spans; the distance follows from the
    # object's size and the focal length, so the same config frames millimetre parts and
    # furniture alike. Ignored by placement=float and coverage (their objects follow the camera)
    object_share: Any = None
    elevation_deg: Any = dist([30.0, 70.0])  # above the ground plane
    azimuth_deg: Any = dist([0.0, 360.0])
    look_at_jitter: float = 0.05  # metres, uniform in a cube around the spawn centre
    roll_deg: Any = dist(0.0)  # rotation about the optical axis
    focal_length_px: Any = None  # when set, overrides fov_deg (fx = fy, pixels)
    min_visible_objects: int = 0  # resample the camera until this many object centres are in view
    max_tries: int = 20  # camera resampling cap for min_visible_objects
    position: Optional[List[float]] = None  # fixed camera position (metres), overrides the hemisphere
    look_at: Optional[List[float]] = None  # fixed look-at point (with position)
    znear: float = 0.01  # metres
    zfar: float = 30.0  # metres
    views_per_scene: int = 1  # consecutive images sharing one settled scene (objects, lights,
    # materials, background, split), each with its own camera and effects: the physics is paid
    # once per scene. Not with objects.placement=float (its objects are placed for one camera)


# objects.placement values whose objects are placed for the camera (in its view), not in the
# world: no physics, no camera resampling, one view per scene, no framing by object size
FOLLOW_CAMERA = ("float", "coverage")


@dataclass
class ObjectsConfig:
    count: Any = dist([3, 15])  # labeled objects per image
    asset_sets: List[str] = field(default_factory=lambda: ["primitives", "pybullet"])
    scale: Any = dist([0.8, 1.25])  # times the asset's nominal size
    spawn_radius: float = 0.25  # metres: drop positions lie in this disk around the origin
    drop_height: Any = dist([0.02, 0.15])  # metres above the floor
    spread_tries: int = 10  # drop positions tried per object; the lowest free start wins (objects
    # overlapping an earlier one start above it). 1: the first, so more towers, longer falls and
    # ~25% more physics steps on tabletop for about the same occlusion statistics
    random_color: bool = True  # untextured assets without a declared colour get a random one (see materials)
    # assets that declare a colour (manifest/sidecar color:, MTL Kd, uniform vertex colours):
    # keep it, jitter it (scenes.COLOR_JITTER), or randomize like any other (an asset's own
    # appearance: wins); randomize also repaints textured assets
    appearance: str = "jitter"
    # placement=drop: the shares of objects that start standing as made (assets with an
    # `up:` axis), or in one of their stable resting poses (trimesh's compute_stable_poses,
    # by probability), both at any yaw; the rest fall from a uniformly random orientation
    upright_share: float = 0.6
    stable_pose_share: float = 0.3
    placement: str = "drop"  # drop (physics) | float (in front of the camera) | coverage | shelf | fixed
    float_distance: Any = dist([0.5, 1.4])  # float: metres from the camera
    # placement=coverage: objects float in front of the camera, each class's orientations
    # relative to the camera and apparent sizes stratified over the dataset (classes dealt
    # round-robin as with balance=true); size: the bounding sphere's diameter as a share of
    # the image's shorter side, log-uniform in [low, high]
    coverage_size: List[float] = field(default_factory=lambda: [0.08, 0.7])
    class_weights: Dict[str, float] = field(default_factory=dict)  # category -> weight (default 1)
    balance: bool = False  # every class gets about the same number of instances over the dataset
    fixed: List[Any] = field(default_factory=list)  # placement=fixed: [{asset, position, rotation_deg, scale, color}]


@dataclass
class AssetsConfig:
    units: str = "auto"  # folders of meshes: auto (guess from size) | m | cm | mm | in
    on_error: str = "fail"  # a broken mesh in a folder: fail, or skip it with a warning
    max_faces: int = 50000  # plain meshes with more faces are simplified to this many (warned); 0: never


@dataclass
class DistractorsConfig:
    count: Any = dist(0)  # unlabeled objects per image: they occlude and cast shadows, never labeled
    asset_sets: List[str] = field(default_factory=lambda: ["clutter"])  # shapes no built-in class has
    scale: Any = dist([0.5, 1.5])
    share_class_shapes: bool = False  # true: allow distractor assets that are also labeled classes


@dataclass
class MaterialsConfig:
    # HSV base colour of untextured objects. Greys, whites and near-blacks included: real mugs,
    # bricks and tools are often achromatic, and the transfer benchmark's mAP50 rose 0.538 ->
    # 0.563 (two seeds) against saturation and value >= 0.35 (docs/transfer.md)
    hue: Any = dist([0.0, 1.0])
    saturation: Any = dist([0.0, 1.0])
    value: Any = dist([0.12, 0.95])
    metallic: Any = dist(0.0)
    roughness: Any = dist([0.3, 0.9])
    texture: Any = dist("none")  # none | noise | checker | stripes | gradient | wood | tiles | marble | cells | image, or a {choice: ...}
    texture_scale: Any = dist([8.0, 30.0])  # pattern repeats per metre
    texture_dir: Optional[str] = None  # images for texture=image
    per: str = "object"  # object: each instance its own material; class: one per class and image


@dataclass
class FloorConfig:
    enabled: bool = True
    size: float = 4.0  # metres, square, top at z = 0
    value: Any = dist([0.25, 0.75])  # HSV value (brightness)
    saturation: Any = dist([0.0, 0.15])
    texture: Any = dist("none")  # as materials.texture
    texture_scale: Any = dist([2.0, 8.0])


@dataclass
class BackgroundConfig:
    kind: Any = dist("solid")  # solid | any materials.texture pattern | image, or a {choice: ...}
    value: Any = dist([0.2, 0.8])
    saturation: Any = dist([0.0, 0.3])
    scale: Any = dist([2.0, 12.0])  # pattern repeats across the image
    image_dir: Optional[str] = None  # images for kind=image (random crops)


@dataclass
class ContainerConfig:
    kind: str = "none"  # none | bin | shelf: unlabeled fixed geometry that objects rest in/on
    size: List[float] = field(default_factory=lambda: [0.45, 0.35])  # bin inner x, y; shelf width, depth
    wall_height: float = 0.15  # bin
    thickness: float = 0.015  # walls and boards
    levels: int = 3  # shelf boards
    level_height: float = 0.3  # shelf: metres between boards


@dataclass
class LightsConfig:
    count: Any = dist([1, 4])
    types: Any = dist(["directional", "point", "spot"])  # or {choice: ..., weights: ...}
    temperature_k: Any = dist([3000.0, 7500.0])  # colour temperature, Kelvin
    shadow_probability: float = 1.0  # per light: chance it casts shadows (point lights never do)
    directional_intensity: Any = dist([0.5, 2.0])  # lux
    point_intensity: Any = dist([1.0, 6.0])  # candela
    distance: Any = dist([1.5, 3.0])  # metres (point/spot)
    elevation_deg: Any = dist([35.0, 85.0])
    ambient: Any = dist([0.1, 0.3])
    fixed: List[Any] = field(default_factory=list)  # [{kind, position, look_at, intensity, temperature_k}]


@dataclass
class PhysicsConfig:
    enabled: bool = True
    timestep: float = 1.0 / 240.0  # seconds
    solver_iterations: int = 10  # contact solver iterations per step (pybullet's default is 50)
    max_steps: int = 2400  # step cap; scenes still moving then are reported as not settled
    linear_velocity_threshold: float = 0.01  # m/s: at rest below this ...
    angular_velocity_threshold: float = 0.1  # rad/s: ... and below this
    sink_tolerance: float = 0.01  # metres below the floor before an object counts as sunk
    penetration_tolerance: float = 0.005  # metres of overlap between two objects before it counts
    rest_checks: int = 3  # ... for this many consecutive checks (one check every 10 steps); 3 ends
    # tabletop and shelf scenes ~11% sooner than 5 with the same rest poses (p95 0.1 mm apart)
    friction: Any = dist(0.6)  # objects' lateral friction unless their asset sets one
    restitution: Any = dist(0.05)
    max_tries: int = 3  # resample scenes that fail a check (not settled, sunk, fell off, exploded)
    explode_speed: float = 3.0  # m/s above the free-fall speed from the highest start: exploded
    rolling_friction: float = 0.002  # also spinning friction: stops balls rolling forever
    linear_damping: float = 0.1  # per second (pybullet's default 0.04); barely slows a fall
    angular_damping: float = 0.5  # per second (pybullet's 0.04): rocking and rolling die out
    # sooner, about 25% fewer physics steps per scene for the same outcomes
    floor_friction: float = 0.8


@dataclass
class RenderConfig:
    shadows: bool = True  # shadow maps for directional and spot lights
    shadow_map_size: int = 1024  # texels per side; 2048 (pyrender's default) costs 2x per image
    shadow_filter: str = "bilinear"  # bilinear: 4 depth reads per light and pixel | pcf3x3: pyrender's
    # 36 (softer shadow edges, about 3x the RGB pass's cost on llvmpipe)
    png_compression: int = 1  # 0 (fast, large) .. 9 (slow, small); lossless either way
    write_depth: bool = True
    # normals/<name>.png: camera-frame surface normals, 8-bit RGB = (n + 1) / 2 (docs/formats.md)
    write_normals: bool = False


@dataclass
class DifficultyLevel:
    min_height: int = 25  # visible box height, pixels
    min_visibility: float = 0.5
    max_truncation: float = 0.3


@dataclass
class DifficultyConfig:
    # KITTI-style: the first level an object meets; otherwise "beyond_hard".
    easy: DifficultyLevel = field(default_factory=lambda: DifficultyLevel(40, 0.85, 0.15))
    moderate: DifficultyLevel = field(default_factory=lambda: DifficultyLevel(25, 0.5, 0.3))
    hard: DifficultyLevel = field(default_factory=lambda: DifficultyLevel(25, 0.2, 0.5))


@dataclass
class AnnotateConfig:
    min_visible_pixels: int = 1  # objects with fewer visible pixels get no annotation at all
    min_visibility: float = 0.0  # below: filtered (see `filtered`)
    min_area: int = 0  # visible pixels; below: filtered
    min_box_side: int = 0  # pixels, shorter side of the visible box; below: filtered
    filtered: str = "ignore"  # ignore: kept with ignore=1 and iscrowd=1 (COCOeval skips them) | drop
    amodal_canvas: float = 1.0  # frame sizes added on each side to measure truncation
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    # optional label kinds in each annotation (docs/formats.md): occluders (occlusion order),
    # obb (oriented box of the visible mask), box3d (3D box and its projected corners),
    # keypoints (the assets' named 3D points, COCO keypoints with visibility)
    labels: List[str] = field(default_factory=list)


@dataclass
class SplitsConfig:
    train: float = 1.0  # fractions in [0, 1] summing to 1; each image's split is drawn from (seed, index)
    val: float = 0.0
    test: float = 0.0


@dataclass
class CocoConfig:
    polygons: bool = False  # visible masks as polygons (outer boundaries, no holes) instead of RLE


@dataclass
class YoloConfig:
    segments: bool = False  # write segmentation polygons instead of boxes
    obb: bool = False  # write oriented boxes (Ultralytics OBB task) instead of boxes
    pose: bool = False  # add keypoints (Ultralytics pose task; needs annotate.labels with keypoints)


@dataclass
class QualityConfig:
    """Thresholds of `simgen report`'s quality flags (saved with the dataset)."""

    dark_mean: float = 0.06  # mean brightness (0..1) below which an image is near-black
    blown_fraction: float = 0.4  # fraction of saturated pixels above which an image is blown out
    degenerate_box_px: int = 2  # boxes with a side of this many pixels or fewer
    duplicate_bits: int = 3  # difference-hash bits within which two images are near-duplicates
    class_share_ratio: float = 0.5  # a class below this fraction of its requested share


@dataclass
class ShardsConfig:
    """How the index range 0..num_images-1 is cut into contiguous shards (see README, Scale)."""

    size: int = 0  # images per Ray task (0 = auto: about 4 tasks per CPU, at most 100 images)
    count: int = 1  # split the dataset into this many independent jobs (Slurm arrays, machines)
    index: Optional[int] = None  # which job this run is (0..count-1); null = the whole dataset


@dataclass
class RayConfig:
    address: Optional[str] = None  # null: start a local Ray instance; "auto" or "ray://head:10001"
    cpus_per_task: int = 1  # CPUs Ray reserves per task; llvmpipe gets as many raster threads
    shared_storage: bool = False  # true: tasks write into output_dir themselves (same path on
    # every node, e.g. NFS); false: tasks return the encoded files and the driver writes them
    max_pending: int = 0  # shards submitted and not yet finished, at most; 0: four per task slot
    # of the cluster (re-read as it grows), at least 16


@dataclass
class SimGenConfig:
    num_images: int = 50
    seed: int = 0
    output_dir: str = "out/demo"
    workers: Optional[int] = None  # local processes; null = one per CPU core available
    engine: str = "local"  # local | ray (pip install 'simgen[ray]')
    retries: int = 2  # times a shard whose worker died (killed, OOM, node lost) is run again
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    overwrite: bool = False
    progress: bool = True
    scene_name: str = "tabletop"  # set by the scene template; informational
    camera: CameraConfig = field(default_factory=CameraConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    assets: AssetsConfig = field(default_factory=AssetsConfig)
    distractors: DistractorsConfig = field(default_factory=DistractorsConfig)
    materials: MaterialsConfig = field(default_factory=MaterialsConfig)
    floor: FloorConfig = field(default_factory=FloorConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    lights: LightsConfig = field(default_factory=LightsConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    # Config group `edge_cases` (configs/edge_cases/*.yaml, combinable: edge_cases=[night,fog]):
    # condition name -> {p: probability per image, <parameter>: <distribution>}; see simgen.effects.
    edge_cases: Dict[str, Any] = field(default_factory=dict)
    formats: List[str] = field(default_factory=lambda: ["coco"])  # coco (always) + yolo, voc, bop, semantic
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    yolo: YoloConfig = field(default_factory=YoloConfig)
    coco: CocoConfig = field(default_factory=CocoConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)


_SECTIONS = {"camera": CameraConfig, "objects": ObjectsConfig, "assets": AssetsConfig, "distractors": DistractorsConfig,
             "materials": MaterialsConfig, "floor": FloorConfig, "background": BackgroundConfig,
             "container": ContainerConfig, "lights": LightsConfig, "physics": PhysicsConfig,
             "render": RenderConfig, "annotate": AnnotateConfig, "splits": SplitsConfig, "yolo": YoloConfig, "coco": CocoConfig,
             "quality": QualityConfig, "shards": ShardsConfig, "ray": RayConfig}

# Keys that do not change a single output byte: a resumed run may change them freely.
NON_OUTPUT_KEYS = ("workers", "overwrite", "progress", "output_dir", "quality", "engine", "retries", "shards",
                   "ray")

_registered = False


def register_schema() -> None:
    """Register the schema in Hydra's ConfigStore (idempotent)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="simgen_schema", node=SimGenConfig)
    _registered = True


# --------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------


def compose(overrides: Optional[List[str]] = None):
    """Compose the run config from packaged configs + overrides; raise ConfigError on bad input.

    Overrides whose value is a list or a dict (``objects.scale={normal:[1,0.1]}``) replace the
    node instead of merging into it, so a distribution can change shape (number, range,
    dict) wherever it was set before. Returns an OmegaConf DictConfig typed by
    :class:`SimGenConfig` (validated).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_schema()
    overrides = list(overrides or [])
    focused: List[Tuple[str, Any]] = []  # focus=<focus.yaml> (simgen focus): its keys, before the other overrides
    for text in [o for o in overrides if o.startswith("focus=")]:
        from .focus import load

        focused += load(text.split("=", 1)[1])
        overrides.remove(text)
    hydra_overrides, replace = _split_overrides(overrides)
    replace = focused + replace
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="simgen.conf", version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=hydra_overrides)
        for key, value in replace:
            exists = OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING
            if not exists and not _open_parent(cfg, key):
                raise ConfigError(f"unknown config key '{key}' (fix: check the spelling; `simgen --cfg` "
                                  f"prints every key)")
            if exists:
                OmegaConf.update(cfg, key, value, merge=False)
            else:
                from omegaconf import open_dict

                with open_dict(cfg):
                    OmegaConf.update(cfg, key, value, merge=False)
        fill_defaults(cfg)
        OmegaConf.resolve(cfg)  # an interpolation (${...}) that names nothing fails here, as a config error
        unknown = _keys_outside_schema(cfg)
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}' (an added '+' key is not in simgen's schema and "
                              f"would be ignored; fix: check the spelling; `simgen --cfg` prints every key)")
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf raise many types; translate all of them.
        raise ConfigError(_explain_hydra_error(exc, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
        import shutil

        while _TEMP_ROOTS:
            shutil.rmtree(_TEMP_ROOTS.pop(), ignore_errors=True)
    validate(cfg)
    if cfg.camera.object_share is not None and any(o.split("=", 1)[0].lstrip("+~") == "camera.distance"
                                                   for o in overrides):
        raise ConfigError("camera.distance has no effect while camera.object_share frames the objects' size (the "
                          "scene sets it) (fix: add camera.object_share=null to place the camera by camera.distance, "
                          "or frame by size: camera.object_share=[0.07,0.35])")
    return cfg


_MISSING = object()
CONFIG_GROUPS = ("scene", "edge_cases")  # Hydra groups: their overrides pick files
_TEMP_ROOTS: List[str] = []  # private scene folders made for this compose() call


def _keys_outside_schema(cfg, prefix: str = "") -> List[str]:
    """Keys of ``cfg`` that its typed schema does not declare (Hydra's ``+key=value`` adds
    them even to a typed node); free-form mappings (edge_cases, class_weights) take any key."""
    from omegaconf import DictConfig

    out = []
    schema = cfg._metadata.object_type
    declared = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in cfg.keys():
        if declared is not None and key not in declared:
            out.append(f"{prefix}{key}")
            continue
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            out += _keys_outside_schema(child, f"{prefix}{key}.")
    return out


def _open_parent(cfg, key: str) -> bool:
    """True when ``key`` would be a new entry of a free-form mapping (edge_cases,
    objects.class_weights), where new keys are allowed."""
    from omegaconf import DictConfig, OmegaConf

    parent = OmegaConf.select(cfg, key.rsplit(".", 1)[0], default=None) if "." in key else None
    return isinstance(parent, DictConfig) and parent._metadata.object_type in (None, dict)


def _split_overrides(overrides: List[str]):
    """(overrides for Hydra, [(key, python value)] to apply with replace semantics)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot parse the command line overrides: {first} (fix: key=value, "
                          f"quote values with spaces)") from None
    keep, replace = [], []
    for text, ov in zip(overrides, parsed):
        if ov.key_or_group.startswith("hydra."):
            keep.append(text)
            continue
        if ov.key_or_group == "scene" and isinstance(ov.value(), str) and ov.value().endswith((".yaml", ".yml")):
            keep.extend(_user_scene(ov.value()))
            continue
        if ov.is_sweep_override():
            raise ConfigError(f"'{text}' is a sweep (fix: add -m to make one dataset per value, give one "
                              f"value, or a distribution such as {{choice: [a, b]}})")
        value = ov.value() if ov.type == OverrideType.CHANGE and ov.package is None else None
        if isinstance(value, (list, dict)) and ov.key_or_group not in CONFIG_GROUPS:
            replace.append((ov.key_or_group, value))
        else:
            keep.append(text)
    return keep, replace


def _user_scene(path: str) -> List[str]:
    """Overrides that load a scene template from any file: Hydra finds group options only
    under ``<search path>/scene/``, so expose the file there through a private folder."""
    import os
    import tempfile

    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ConfigError(f"scene file '{path}' not found (fix: give an existing YAML file, or a "
                          f"built-in scene: {', '.join(_available_scenes())})")
    import yaml

    try:
        with open(full, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (UnicodeDecodeError, yaml.reader.ReaderError):
        raise ConfigError(f"scene file '{path}' is not a text file (binary or not UTF-8); fix: give a YAML "
                          f"scene file (see scenes/*.yaml for examples)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"scene file '{path}' is not valid YAML ({str(exc).splitlines()[0]}); fix the "
                          f"file (see scenes/*.yaml for examples)") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"scene file '{path}' must hold a mapping of config keys, got {type(data).__name__}")
    name = os.path.splitext(os.path.basename(full))[0]
    root = tempfile.mkdtemp(prefix="simgen-scene-")
    _TEMP_ROOTS.append(root)
    os.makedirs(os.path.join(root, "scene"))
    with open(full, "rb") as src, open(os.path.join(root, "scene", f"{name}.yaml"), "wb") as dst:
        dst.write(src.read())
    return [f"hydra.searchpath=[file://{root}]", f"scene={name}"]


def fill_defaults(cfg, schema=None, prefix: str = "") -> None:
    """Give every distribution field still None its schema default (see :func:`dist`)."""
    import dataclasses

    from omegaconf import OmegaConf

    schema = schema or SimGenConfig
    for f in dataclasses.fields(schema):
        if "dist_default" in f.metadata and cfg[f.name] is None:
            OmegaConf.update(cfg, f.name, f.metadata["dist_default"], merge=False)
    if schema is SimGenConfig:
        for name, sub in _SECTIONS.items():
            fill_defaults(cfg[name], sub, f"{name}.")


def _available_scenes() -> List[str]:
    from importlib import resources

    root = resources.files("simgen.conf.scene")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _available_presets(group: str = "edge_cases") -> List[str]:
    from importlib import resources

    root = resources.files("simgen.conf") / group
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _explain_hydra_error(exc: Exception, overrides: List[str]) -> str:
    """Turn a Hydra/OmegaConf exception into one actionable line."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    name = type(exc).__name__
    cause = str(exc.__cause__ or "")
    wrong = re.match(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", cause)
    if first.startswith("Error merging override ") and wrong:  # a value of the wrong type
        override = first[len("Error merging override "):]
        key, given = override.split("=", 1) if "=" in override else (override, wrong.group(1))
        want = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false"}.get(
            wrong.group(3), wrong.group(3))
        example = {"Integer": "100", "Float": "0.5", "Boolean": "true"}.get(wrong.group(3), "...")
        return (f"{key.lstrip('+')} must be {want}, got '{given}' (fix: {key.lstrip('+')}={example}, written "
                f"without exponent or units; `simgen --cfg` prints every key with its value)")
    shape = (("a list", "[a,b]") if "is not a ListConfig" in cause else
             ("a mapping", "{name:value}") if "is not a DictConfig" in cause or " to Dict[" in cause else None)
    if first.startswith("Error merging override ") and shape:  # a word where a list or a mapping goes
        key, given = (first[len("Error merging override "):].split("=", 1) + [""])[:2]
        key = key.lstrip("+")
        return (f"{key} takes {shape[0]}, got '{given}' (fix: {key}={shape[1]}, quoted in the shell; "
                f"`simgen --cfg` prints every key with its value)")
    if "Could not find 'edge_cases/" in text:
        wanted = text.split("edge_cases/")[1].split("'")[0]
        return (f"unknown edge_cases preset '{wanted}'; available: {', '.join(_available_presets())} "
                f"(fix: edge_cases=<one of them> or edge_cases=[a,b])")
    if "Could not find 'preset/" in text:
        wanted = text.split("preset/")[1].split("'")[0]
        return (f"unknown preset '{wanted}'; available: {', '.join(_available_presets('preset'))} "
                f"(fix: preset=<one of them>)")
    if "Could not find 'scene/" in text or "scene/" in first and "not found" in first.lower():
        wanted = first.split("scene/")[-1].split("'")[0]
        return (f"unknown scene '{wanted}'; available scenes: {', '.join(_available_scenes())} "
                f"(fix: scene=<one of them>)")
    if first.startswith("Could not override '") and ("+" in text or "not in struct" in text):
        key = first.split("'")[1]
        return (f"unknown config key '{key}' (fix: check the spelling; `simgen --cfg` prints "
                f"every key)")
    scene = re.match(r"In 'scene/([^']+)': ConfigKeyError", first)
    if scene and "Key '" in text:
        full = _full_key(text) or text.split("Key '")[1].split("'")[0]
        return (f"unknown config key '{full}' in scene file '{scene.group(1)}' (fix: correct or remove it "
                f"there; `simgen --cfg` prints every key)")
    if "Key '" in text and ("not in struct" in text or "is not in struct" in text):
        key = text.split("Key '")[1].split("'")[0]
        full = _full_key(text) or key
        return (f"unknown config key '{full}' (fix: check the spelling; `simgen --cfg` prints "
                f"every key)")
    if name in ("ValidationError",) or "could not be converted" in text or "Value '" in text:
        full = _full_key(text)
        return f"invalid value for '{full}': {first} (fix: give a value of the right type)"
    if "Could not override" in first or "Could not append" in first:
        rest = " ".join(line.strip() for line in text.splitlines()[1:3])
        return f"{first} {rest}".strip()
    if name == "OverrideParseException" or "mismatched input" in text or "no viable alternative" in text:
        return f"cannot parse the command line overrides {overrides}: {first} (fix: use key=value)"
    return f"config error: {first}"


def _full_key(text: str) -> Optional[str]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("full_key:"):
            return line.split(":", 1)[1].strip()
    return None


# --------------------------------------------------------------------------------------
# Validation (after composition; types are already checked by OmegaConf)
# --------------------------------------------------------------------------------------


def validate(cfg) -> None:
    """Check values a type system cannot: ranges, signs, known names. Raise ConfigError."""
    from omegaconf import DictConfig, ListConfig

    from .distributions import check_choice, check_range
    from .distributions import parse as dist_parse
    from .textures import PROCEDURAL

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(cfg.num_images >= 1, f"num_images must be a positive integer, got {cfg.num_images} "
         f"(fix: num_images=50)")
    need(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed} (fix: seed=0)")
    need(cfg.workers is None or cfg.workers >= 1,
         f"workers must be >= 1 (or null for one per core), got {cfg.workers} (fix: workers=2)")
    need(cfg.engine in ("local", "ray"), f"engine must be local or ray, got '{cfg.engine}' (fix: engine=local)")
    need(cfg.retries >= 0, f"retries must be >= 0, got {cfg.retries} (fix: retries=2)")
    sh = cfg.shards
    need(sh.size >= 0, f"shards.size must be >= 0 (0 = auto), got {sh.size} (fix: shards.size=0)")
    need(1 <= sh.count <= cfg.num_images, f"shards.count must be between 1 and num_images "
         f"({cfg.num_images}), got {sh.count} (fix: shards.count=1)")
    need(sh.index is None or 0 <= sh.index < sh.count, f"shards.index must be between 0 and "
         f"shards.count-1 ({sh.count - 1}), got {sh.index} (fix: shards.index=0, or shards.count=N)")
    need(cfg.ray.max_pending >= 0, f"ray.max_pending must be >= 0 (0: automatic), got {cfg.ray.max_pending} "
         f"(fix: ray.max_pending=0)")
    need(cfg.ray.cpus_per_task >= 1, f"ray.cpus_per_task must be >= 1, got {cfg.ray.cpus_per_task} "
         f"(fix: ray.cpus_per_task=1)")
    need(bool(str(cfg.output_dir).strip()), "output_dir is empty (fix: output_dir=out/mydata)")
    cam = cfg.camera
    for k in ("width", "height"):
        v = cam[k]
        need(16 <= v <= 8192, f"camera.{k} must be between 16 and 8192 pixels, got {v} "
             f"(fix: camera.{k}={640 if k == 'width' else 480})")
    check_range("camera.fov_deg", cam.fov_deg, low=1.0, high=170.0)
    if cam.resolution is not None:
        from .distributions import _plain, parse

        spec = _plain(cam.resolution)
        need(isinstance(spec, dict) and "choice" in spec,
             "camera.resolution must be null or {choice: [[w, h], ...]} (one fixed size: camera.width/height)")
        for v in parse("camera.resolution", spec).params:
            need(isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and 16 <= x <= 8192
                                                                      for x in v),
                 f"camera.resolution entries must be [width, height] in 16..8192 pixels, got {v!r}")
    check_range("camera.distance", cam.distance, low=1e-3)
    if cam.object_share is not None:
        check_range("camera.object_share", cam.object_share, low=1e-3, high=4.0)
    check_range("camera.elevation_deg", cam.elevation_deg, low=-89.0, high=89.9)
    check_range("camera.azimuth_deg", cam.azimuth_deg)
    need(cam.look_at_jitter >= 0, "camera.look_at_jitter must be >= 0")
    check_range("camera.roll_deg", cam.roll_deg)
    if cam.focal_length_px is not None:
        check_range("camera.focal_length_px", cam.focal_length_px, low=1.0)
    need(cam.min_visible_objects >= 0 and cam.max_tries >= 1,
         "camera.min_visible_objects must be >= 0 and camera.max_tries >= 1")
    for k in ("position", "look_at"):
        v = cam[k]
        need(v is None or len(v) == 3, f"camera.{k} must be null or [x, y, z] in metres, got {v}")
    need(isinstance(cam.views_per_scene, int) and not isinstance(cam.views_per_scene, bool)
         and cam.views_per_scene >= 1,
         f"camera.views_per_scene must be an integer >= 1, got {cam.views_per_scene!r} (fix: camera.views_per_scene=1)")
    need((cam.position is None) == (cam.look_at is None),
         "camera.position and camera.look_at must be given together")
    need(0 < cam.znear < cam.zfar, f"camera.znear/zfar must satisfy 0 < znear < zfar, got "
         f"{cam.znear}, {cam.zfar}")
    ob = cfg.objects
    count = check_range("objects.count", ob.count, low=0, high=255, integer=True)
    need(count.support[1] >= 1, f"objects.count={ob.count} puts no labeled object in any image (fix: "
         f"objects.count=[1,10]; a range from 0, e.g. [0,5], also makes some images without objects)")
    check_range("objects.scale", ob.scale, low=1e-4)
    check_range("objects.drop_height", ob.drop_height, low=0.0)
    need(ob.spawn_radius >= 0, "objects.spawn_radius must be >= 0")
    need(ob.spread_tries >= 1, f"objects.spread_tries must be >= 1, got {ob.spread_tries} (fix: objects.spread_tries=10)")
    need(len(ob.asset_sets) > 0, "objects.asset_sets is empty (fix: objects.asset_sets=[primitives])")
    placements = ("drop", *FOLLOW_CAMERA, "shelf", "fixed")
    need(ob.placement in placements, f"objects.placement must be one of {', '.join(placements)}, got "
         f"'{ob.placement}'")
    check_range("objects.float_distance", ob.float_distance, low=1e-3)
    need(ob.placement not in FOLLOW_CAMERA or cam.views_per_scene == 1,
         f"camera.views_per_scene={cam.views_per_scene} needs objects placed in the world, but "
         f"objects.placement={ob.placement} places them in front of one camera (fix: camera.views_per_scene=1, or "
         f"objects.placement=drop)")
    cs = list(ob.coverage_size)
    need(len(cs) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cs)
         and 0 < cs[0] <= cs[1] <= 4, f"objects.coverage_size must be [low, high] with 0 < low <= high <= 4 "
         f"(shares of the image's shorter side), got {cs} (fix: objects.coverage_size=[0.08,0.7])")
    for k, w in ob.class_weights.items():
        need(w >= 0, f"objects.class_weights.{k} must be >= 0, got {w}")
    if ob.placement == "fixed":
        need(len(ob.fixed) > 0, "objects.placement=fixed needs a non-empty objects.fixed list")
        for i, f in enumerate(ob.fixed):
            need(isinstance(f, DictConfig) and isinstance(f.get("asset"), str)
                 and isinstance(f.get("position"), ListConfig) and len(f.position) == 3,
                 f"objects.fixed[{i}] needs asset: <name> and position: [x, y, z]")
    if ob.placement == "shelf":
        need(cfg.container.kind == "shelf", "objects.placement=shelf needs container.kind=shelf")
    need(cfg.assets.units in ("auto", "m", "cm", "mm", "in"),
         f"assets.units must be auto, m, cm, mm or in, got '{cfg.assets.units}'")
    need(0 <= ob.upright_share <= 1 and 0 <= ob.stable_pose_share <= 1
         and ob.upright_share + ob.stable_pose_share <= 1 + 1e-9,
         f"objects.upright_share and objects.stable_pose_share are shares in [0, 1] with a sum <= 1, got "
         f"{ob.upright_share:g} and {ob.stable_pose_share:g} (fix: objects.upright_share=0.6 "
         f"objects.stable_pose_share=0.3)")
    need(cfg.objects.appearance in ("keep", "jitter", "randomize"), f"objects.appearance must be keep, jitter or "
         f"randomize, got '{cfg.objects.appearance}' (fix: objects.appearance=jitter)")
    need(cfg.assets.max_faces == 0 or cfg.assets.max_faces >= 100, f"assets.max_faces must be 0 (never simplify) "
         f"or >= 100, got {cfg.assets.max_faces} (fix: assets.max_faces=50000)")
    need(cfg.assets.on_error in ("fail", "skip"), f"assets.on_error must be fail or skip, got "
         f"'{cfg.assets.on_error}'")
    dc = cfg.distractors
    check_range("distractors.count", dc.count, low=0, high=255, integer=True)
    check_range("distractors.scale", dc.scale, low=1e-4)
    ma = cfg.materials
    for k in ("hue", "saturation", "value", "metallic", "roughness"):
        check_range(f"materials.{k}", ma[k], low=0.0, high=1.0 if k != "hue" else None)
    textures = ("none", *PROCEDURAL, "image")
    check_choice("materials.texture", ma.texture, textures)
    check_range("materials.texture_scale", ma.texture_scale, low=1e-3)
    need(ma.per in ("object", "class"), f"materials.per must be object or class, got '{ma.per}'")
    fl = cfg.floor
    need(fl.size > 0, "floor.size must be > 0")
    check_range("floor.value", fl.value, low=0.0, high=1.0)
    check_range("floor.saturation", fl.saturation, low=0.0, high=1.0)
    check_choice("floor.texture", fl.texture, textures)
    check_range("floor.texture_scale", fl.texture_scale, low=1e-3)
    bg = cfg.background
    check_choice("background.kind", bg.kind, ("solid", *PROCEDURAL, "image"))
    check_range("background.value", bg.value, low=0.0, high=1.0)
    check_range("background.saturation", bg.saturation, low=0.0, high=1.0)
    check_range("background.scale", bg.scale, low=1.0)
    ct = cfg.container
    need(ct.kind in ("none", "bin", "shelf"), f"container.kind must be none, bin or shelf, got '{ct.kind}'")
    need(len(ct.size) == 2 and min(ct.size) > 0 and ct.wall_height > 0 and ct.thickness > 0
         and ct.levels >= 1 and ct.level_height > 0, "container sizes must be positive")
    li = cfg.lights
    check_range("lights.count", li.count, low=1, high=4, integer=True)
    check_choice("lights.types", li.types, ("directional", "point", "spot"))
    check_range("lights.temperature_k", li.temperature_k, low=1000.0, high=40000.0)
    need(0.0 <= li.shadow_probability <= 1.0, "lights.shadow_probability must be in [0, 1]")
    for i, f in enumerate(li.fixed):
        need(isinstance(f, DictConfig) and f.get("kind") in ("directional", "point", "spot")
             and f.get("position") is not None,
             f"lights.fixed[{i}] needs kind: directional|point|spot and position: [x, y, z]")
    for k in ("directional_intensity", "point_intensity", "distance"):
        check_range(f"lights.{k}", li[k], low=0.0)
    check_range("lights.elevation_deg", li.elevation_deg, low=-90.0, high=90.0)
    check_range("lights.ambient", li.ambient, low=0.0, high=10.0)
    ph = cfg.physics
    need(ph.timestep > 0, "physics.timestep must be > 0 (fix: physics.timestep=0.004166)")
    need(ph.max_steps >= 1, "physics.max_steps must be >= 1")
    need(1 <= ph.solver_iterations <= 1000, "physics.solver_iterations must be in 1..1000")
    need(ph.linear_velocity_threshold > 0 and ph.angular_velocity_threshold > 0,
         "physics velocity thresholds must be > 0")
    need(ph.rest_checks >= 1, "physics.rest_checks must be >= 1")
    need(ph.max_tries >= 1, "physics.max_tries must be >= 1")
    need(ph.explode_speed > 0, "physics.explode_speed must be > 0")
    check_range("physics.friction", ph.friction, low=0.0)
    check_range("physics.restitution", ph.restitution, low=0.0, high=1.0)
    for k in ("linear_damping", "angular_damping"):
        need(0.0 <= cfg.physics[k] < 1.0, f"physics.{k} must be in [0, 1), got {cfg.physics[k]} "
             f"(fix: physics.{k}=0.1)")
    need(cfg.render.shadow_filter in SHADOW_FILTERS, f"render.shadow_filter must be {' or '.join(SHADOW_FILTERS)}, "
         f"got '{cfg.render.shadow_filter}' (fix: render.shadow_filter=bilinear)")
    need(cfg.render.shadow_map_size in (256, 512, 1024, 2048, 4096),
         f"render.shadow_map_size must be one of 256, 512, 1024, 2048, 4096, got "
         f"{cfg.render.shadow_map_size}")
    need(0 <= cfg.render.png_compression <= 9,
         f"render.png_compression must be 0..9, got {cfg.render.png_compression}")
    from . import effects
    from .writers import FORMATS

    effects.validate(cfg)
    bad = [f for f in cfg.formats if f not in FORMATS]
    need(not bad, f"unknown format(s) {bad}; known: {', '.join(FORMATS)} (fix: formats=[coco,yolo])")
    need("bop" not in cfg.formats or ob.placement == "fixed" or dist_parse("objects.scale", ob.scale).support == (1, 1),
         f"formats with bop need objects.scale=1 (BOP models have one fixed size), got objects.scale="
         f"{ob.scale} (fix: objects.scale=1, or formats without bop)")
    picked = [k for k in ("segments", "obb", "pose") if cfg.yolo[k]]
    need(len(picked) <= 1, f"yolo.{' and yolo.'.join(picked)} are all true; a YOLO label file holds one kind (fix: "
         f"pick one; `simgen export --to yolo` rewrites yolo/ with another)")
    need(not cfg.yolo.pose or "keypoints" in cfg.annotate.labels, "yolo.pose needs keypoints in the annotations "
         "(fix: annotate.labels=[keypoints])")
    need(not picked or "yolo" in cfg.formats, f"yolo.{picked[0] if picked else ''}=true, but formats has no yolo "
         f"(fix: formats=[coco,yolo])")
    twice = sorted({f for f in cfg.formats if list(cfg.formats).count(f) > 1})
    need(not twice, f"formats names {', '.join(twice)} twice (fix: name each once, e.g. formats=[coco,yolo])")
    sp = cfg.splits
    total = sp.train + sp.val + sp.test
    need(min(sp.train, sp.val, sp.test) >= 0 and max(sp.train, sp.val, sp.test) <= 1 and abs(total - 1) < 1e-6,
         f"splits.train/val/test are fractions in [0, 1] that sum to 1, got {sp.train:g}/{sp.val:g}/{sp.test:g} "
         f"(sum {total:g}; fix: e.g. splits.train=0.8 splits.val=0.2)")
    an = cfg.annotate
    need(an.min_visible_pixels >= 1, "annotate.min_visible_pixels must be >= 1")
    need(0 <= an.min_visibility <= 1, "annotate.min_visibility must be in [0, 1]")
    need(an.min_area >= 0 and an.min_box_side >= 0, "annotate.min_area and min_box_side must be >= 0")
    need(an.filtered in ("ignore", "drop"), f"annotate.filtered must be ignore or drop, got '{an.filtered}'")
    need(0 <= an.amodal_canvas <= 4, "annotate.amodal_canvas must be in [0, 4] frame sizes")
    from .labels import KINDS

    bad = [k for k in an.labels if k not in KINDS]
    need(not bad, f"unknown annotate.labels {bad}; known: {', '.join(KINDS)} (fix: annotate.labels=[occluders,obb])")
    need(len(set(an.labels)) == len(an.labels), f"annotate.labels names a kind twice: {list(an.labels)} (fix: name each once)")
    for lv in ("easy", "moderate", "hard"):
        d = an.difficulty[lv]
        need(d.min_height >= 0 and 0 <= d.min_visibility <= 1 and 0 <= d.max_truncation <= 1,
             f"annotate.difficulty.{lv}: min_height >= 0, min_visibility and max_truncation in [0, 1]")


def to_yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, sort_keys=False)


def output_fingerprint(cfg) -> dict:
    """The part of the config that determines output bytes (used to refuse mixing runs)."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_OUTPUT_KEYS:
        d.pop(k, None)
    return d


def usable_cores() -> int:
    """The number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def effective_workers(cfg) -> int:
    """workers, or the number of CPU cores this process may use when workers is null."""
    return int(cfg.workers) if cfg.workers else usable_cores()
