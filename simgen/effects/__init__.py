"""Edge-case conditions: a registry of named effects, each with a probability per image.

Every module in this package registers its conditions with :func:`register`; adding one
means adding one file here. A condition acts at one of two stages:

- ``scene``: changes the sampled scene after physics (camera, lights, occluders) so the
  renderer produces the hard case and labels come out of the render as always;
- ``image``: changes the rendered Frame. Photometric ones touch RGB only and never move a
  label; geometric ones (``moves_labels``) warp RGB, instance ids, depth and unoccluded
  masks with the same map, and labels are computed from the warped buffers.

Config (group ``edge_cases``): ``edge_cases.<name>: {p: <probability>, <param>: <spec>}``;
the parameters take distributions. Each condition fires from its own draw of the
``(seed, index)`` effects stream and draws its parameters whether or not it fires, so one
condition never shifts another's randomness.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Condition:
    name: str
    stage: str  # "scene" | "image"
    defaults: Dict[str, Any]  # parameter -> default distribution spec
    apply: Callable  # scene: (scene, params, rng, ctx) -> scene; image: (frame, params, rng, scene) -> frame
    moves_labels: bool = False
    doc: str = ""
    bounds: Dict[str, Tuple[Optional[float], Optional[float]]] = field(default_factory=dict)


REGISTRY: Dict[str, Condition] = {}


def register(name: str, stage: str, defaults: Dict[str, Any], moves_labels: bool = False,
             bounds: Optional[Dict[str, Tuple[Optional[float], Optional[float]]]] = None):
    """Decorator: add an effect function to the registry under ``name``; ``bounds`` gives the
    (low, high) every value of a parameter must respect (None: unbounded)."""

    def wrap(fn):
        if name in REGISTRY:
            raise ValueError(f"edge case {name!r} registered twice")
        REGISTRY[name] = Condition(name, stage, dict(defaults), fn, moves_labels, (fn.__doc__ or "").strip(),
                                   dict(bounds or {}))
        return fn

    return wrap


def _load_all() -> None:
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{mod}")


_load_all()
ORDER = tuple(sorted(REGISTRY, key=lambda n: (REGISTRY[n].stage != "scene", n)))


@dataclass(frozen=True)
class Fired:
    """A condition applied to one image, with its sampled parameters (plain numbers)."""

    name: str
    params: Dict[str, Any]
    seed: int


def _entries(cfg) -> Dict[str, Dict[str, Any]]:
    from omegaconf import DictConfig, OmegaConf

    ec = cfg.get("edge_cases") if hasattr(cfg, "get") else None
    if ec is None:
        return {}
    data = OmegaConf.to_container(ec, resolve=True) if isinstance(ec, DictConfig) else dict(ec)
    return {k: (v or {}) for k, v in data.items()}


def validate(cfg) -> None:
    """Unknown conditions, probabilities outside [0, 1] and bad parameters: ConfigError."""
    from ..distributions import check_range

    for name, entry in _entries(cfg).items():
        if name not in REGISTRY:
            raise ConfigError(f"unknown edge case '{name}'; known: {', '.join(sorted(REGISTRY))}")
        if not isinstance(entry, dict):
            raise ConfigError(f"edge_cases.{name} must be a mapping like {{p: 0.5}}, got {entry!r}")
        p = entry.get("p", 0.0)
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"edge_cases.{name}.p must be a probability in [0, 1], got {p!r}")
        cond = REGISTRY[name]
        for key, spec in entry.items():
            if key == "p":
                continue
            if key not in cond.defaults:
                raise ConfigError(f"edge_cases.{name}.{key} is not a parameter of {name} "
                                  f"(parameters: {', '.join(sorted(cond.defaults)) or 'none'})")
            low, high = cond.bounds.get(key, (None, None))
            check_range(f"edge_cases.{name}.{key}", spec, low=low, high=high)


def sample(cfg, seed: int, index: int) -> List[Fired]:
    """The conditions that fire for image ``index`` and their parameters, in ORDER."""
    from ..distributions import sample as draw
    from ..seeds import factor_rng

    entries = _entries(cfg)
    fired = []
    for k, name in enumerate(ORDER):
        entry = entries.get(name)
        if not entry:
            continue
        rng = factor_rng(seed, index, "effects", 0, k)
        fires = rng.random() < float(entry.get("p", 0.0))
        cond = REGISTRY[name]
        params = {key: draw(entry.get(key, spec), rng, f"edge_cases.{name}.{key}")
                  for key, spec in sorted(cond.defaults.items())}
        effect_seed = int(rng.integers(0, 2**31 - 1))
        if fires:
            fired.append(Fired(name, params, effect_seed))
    return fired


def apply_scene(fired: List[Fired], scene, ctx):
    for f in fired:
        cond = REGISTRY[f.name]
        if cond.stage == "scene":
            scene = cond.apply(scene, f.params, np.random.default_rng(f.seed), ctx)
    return scene


def apply_image(fired: List[Fired], frame, scene) -> Tuple[Any, Dict[str, Any]]:
    """Apply the image-stage conditions; returns (frame, extra image metadata)."""
    meta: Dict[str, Any] = {}
    for f in fired:
        cond = REGISTRY[f.name]
        if cond.stage == "image":
            frame, extra = cond.apply(frame, f.params, np.random.default_rng(f.seed), scene)
            meta.update(extra or {})
    return frame, meta


def as_metadata(fired: List[Fired]) -> Dict[str, Dict[str, Any]]:
    def plain(v):
        return round(float(v), 6) if isinstance(v, (float, np.floating)) else v

    return {f.name: {k: plain(v) for k, v in f.params.items()} for f in fired}
