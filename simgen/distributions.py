"""Sampling of config values: a number is a constant, ``[low, high]`` is uniform.

Every sampler takes an explicit ``rng: np.random.Generator``; nothing touches global state.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .errors import ConfigError


def _as_pair(name: str, spec: Any):
    try:
        from omegaconf import ListConfig

        if isinstance(spec, ListConfig):
            spec = list(spec)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(spec, bool):
        raise ConfigError(f"{name} must be a number or [low, high], got {spec!r}")
    if isinstance(spec, (int, float)):
        return float(spec), float(spec)
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec
    ):
        return float(spec[0]), float(spec[1])
    raise ConfigError(f"{name} must be a number or [low, high], got {spec!r} "
                      f"(fix: {name}=[1,2] or {name}=1)")


def check_range(name: str, spec: Any, low: Optional[float] = None, high: Optional[float] = None,
                integer: bool = False) -> None:
    """Raise ConfigError unless ``spec`` is a constant or an ordered pair inside [low, high]."""
    a, b = _as_pair(name, spec)
    if a > b:
        raise ConfigError(f"{name}: low {a:g} is greater than high {b:g} (fix: {name}=[{b:g},{a:g}])")
    if integer and (a != int(a) or b != int(b)):
        raise ConfigError(f"{name} must hold integers, got {spec!r}")
    if low is not None and a < low:
        raise ConfigError(f"{name} must be >= {low:g}, got {a:g}")
    if high is not None and b > high:
        raise ConfigError(f"{name} must be <= {high:g}, got {b:g}")


def sample_float(spec: Any, rng: np.random.Generator, name: str = "value") -> float:
    """A float from a constant or uniform ``[low, high)`` spec."""
    a, b = _as_pair(name, spec)
    return a if a == b else float(rng.uniform(a, b))


def sample_int(spec: Any, rng: np.random.Generator, name: str = "value") -> int:
    """An int from a constant or uniform inclusive ``[low, high]`` spec."""
    a, b = _as_pair(name, spec)
    return int(a) if a == b else int(rng.integers(int(a), int(b) + 1))
