"""Typed Hydra schema for a simgen run, config composition, and validation with one-line errors.

The schema below is registered in Hydra's ConfigStore as ``simgen_schema`` and is the base of
``configs/config.yaml``. Scene templates (``scenes/*.yaml``) are the Hydra config group
``scene`` and, as ``# @package _global_`` presets, set any of these keys. Command-line
overrides win over both.

Ranges are written ``[low, high]`` (sampled uniformly, integers inclusive) or as a single
number (a constant). Units: metres, kilograms, seconds; angles in degrees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from .errors import ConfigError

# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------


@dataclass
class CameraConfig:
    width: int = 640  # pixels
    height: int = 480  # pixels
    fov_deg: Any = 50.0  # vertical field of view, degrees; number or [low, high]
    distance: Any = field(default_factory=lambda: [0.9, 1.5])  # metres from look-at point
    elevation_deg: Any = field(default_factory=lambda: [30.0, 70.0])  # above the ground plane
    azimuth_deg: Any = field(default_factory=lambda: [0.0, 360.0])
    look_at_jitter: float = 0.05  # metres, uniform in a cube around the spawn centre
    znear: float = 0.01  # metres
    zfar: float = 30.0  # metres


@dataclass
class ObjectsConfig:
    count: Any = field(default_factory=lambda: [3, 15])  # labeled objects per image
    asset_sets: List[str] = field(default_factory=lambda: ["primitives", "pybullet"])
    scale: Any = field(default_factory=lambda: [0.8, 1.25])  # times the asset's nominal size
    spawn_radius: float = 0.25  # metres: drop positions lie in this disk around the origin
    drop_height: Any = field(default_factory=lambda: [0.02, 0.15])  # metres above the floor
    random_color: bool = True  # untextured assets get a random base colour


@dataclass
class LightsConfig:
    count: Any = field(default_factory=lambda: [1, 4])
    types: List[str] = field(default_factory=lambda: ["directional", "point", "spot"])
    directional_intensity: Any = field(default_factory=lambda: [0.5, 2.0])  # lux
    point_intensity: Any = field(default_factory=lambda: [1.0, 6.0])  # candela
    distance: Any = field(default_factory=lambda: [1.5, 3.0])  # metres (point/spot)
    elevation_deg: Any = field(default_factory=lambda: [35.0, 85.0])
    ambient: Any = field(default_factory=lambda: [0.1, 0.3])


@dataclass
class PhysicsConfig:
    enabled: bool = True
    timestep: float = 1.0 / 240.0  # seconds
    solver_iterations: int = 10  # contact solver iterations per step (pybullet's default is 50)
    max_steps: int = 2400  # step cap; scenes still moving then are reported as not settled
    linear_velocity_threshold: float = 0.01  # m/s: at rest below this ...
    angular_velocity_threshold: float = 0.1  # rad/s: ... and below this
    sink_tolerance: float = 0.01  # metres below the floor before an object counts as sunk
    rest_checks: int = 5  # ... for this many consecutive checks (one check every 10 steps)
    friction: float = 0.6
    rolling_friction: float = 0.002  # also spinning friction: stops balls rolling forever
    floor_friction: float = 0.8


@dataclass
class RenderConfig:
    shadows: bool = True  # shadow maps for directional and spot lights
    shadow_map_size: int = 1024  # texels per side; 2048 (pyrender's default) costs 2x per image
    png_compression: int = 1  # 0 (fast, large) .. 9 (slow, small); lossless either way
    write_depth: bool = True


@dataclass
class AnnotateConfig:
    min_visible_pixels: int = 1  # objects with fewer visible pixels get no annotation


@dataclass
class SimGenConfig:
    num_images: int = 50
    seed: int = 0
    output_dir: str = "out/demo"
    workers: int = 1
    overwrite: bool = False
    progress: bool = True
    scene_name: str = "tabletop"  # set by the scene template; informational
    camera: CameraConfig = field(default_factory=CameraConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    lights: LightsConfig = field(default_factory=LightsConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)


# Keys that do not change a single output byte: a resumed run may change them freely.
NON_OUTPUT_KEYS = ("workers", "overwrite", "progress", "output_dir")

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

    Returns an OmegaConf DictConfig typed by :class:`SimGenConfig` (validated).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    overrides = list(overrides or [])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="simgen.conf", version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except Exception as exc:  # Hydra/OmegaConf raise many types; translate all of them.
        raise ConfigError(_explain_hydra_error(exc, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    validate(cfg)
    return cfg


def _available_scenes() -> List[str]:
    from importlib import resources

    root = resources.files("simgen.conf.scene")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _explain_hydra_error(exc: Exception, overrides: List[str]) -> str:
    """Turn a Hydra/OmegaConf exception into one actionable line."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    name = type(exc).__name__
    if "Could not find 'scene/" in text or "scene/" in first and "not found" in first.lower():
        wanted = first.split("scene/")[-1].split("'")[0]
        return (f"unknown scene '{wanted}'; available scenes: {', '.join(_available_scenes())} "
                f"(fix: scene=<one of them>)")
    if first.startswith("Could not override '") and ("+" in text or "not in struct" in text):
        key = first.split("'")[1]
        return (f"unknown config key '{key}' (fix: check the spelling; `simgen --cfg` prints "
                f"every key)")
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
    from .distributions import check_range

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(cfg.num_images >= 1, f"num_images must be a positive integer, got {cfg.num_images} "
         f"(fix: num_images=50)")
    need(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed} (fix: seed=0)")
    need(cfg.workers >= 1, f"workers must be >= 1, got {cfg.workers} (fix: workers=1)")
    need(bool(str(cfg.output_dir).strip()), "output_dir is empty (fix: output_dir=out/mydata)")
    cam = cfg.camera
    for k in ("width", "height"):
        v = cam[k]
        need(16 <= v <= 8192, f"camera.{k} must be between 16 and 8192 pixels, got {v} "
             f"(fix: camera.{k}={640 if k == 'width' else 480})")
    check_range("camera.fov_deg", cam.fov_deg, low=1.0, high=170.0)
    check_range("camera.distance", cam.distance, low=1e-3)
    check_range("camera.elevation_deg", cam.elevation_deg, low=-89.0, high=89.9)
    check_range("camera.azimuth_deg", cam.azimuth_deg)
    need(cam.look_at_jitter >= 0, "camera.look_at_jitter must be >= 0")
    need(0 < cam.znear < cam.zfar, f"camera.znear/zfar must satisfy 0 < znear < zfar, got "
         f"{cam.znear}, {cam.zfar}")
    ob = cfg.objects
    check_range("objects.count", ob.count, low=0, high=255, integer=True)
    check_range("objects.scale", ob.scale, low=1e-4)
    check_range("objects.drop_height", ob.drop_height, low=0.0)
    need(ob.spawn_radius >= 0, "objects.spawn_radius must be >= 0")
    need(len(ob.asset_sets) > 0, "objects.asset_sets is empty (fix: objects.asset_sets=[primitives])")
    li = cfg.lights
    check_range("lights.count", li.count, low=1, high=4, integer=True)
    known = {"directional", "point", "spot"}
    need(len(li.types) > 0 and set(li.types) <= known,
         f"lights.types must be a non-empty subset of {sorted(known)}, got {list(li.types)}")
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
    need(cfg.render.shadow_map_size in (256, 512, 1024, 2048, 4096),
         f"render.shadow_map_size must be one of 256, 512, 1024, 2048, 4096, got "
         f"{cfg.render.shadow_map_size}")
    need(0 <= cfg.render.png_compression <= 9,
         f"render.png_compression must be 0..9, got {cfg.render.png_compression}")
    need(cfg.annotate.min_visible_pixels >= 1, "annotate.min_visible_pixels must be >= 1")


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
