"""Distributions for config values, each sampled with an explicit ``np.random.Generator``.

One small syntax, the same in YAML and on the command line (Hydra override grammar):

    3                                   constant
    [0.5, 2]                            uniform in [0.5, 2) (integers: inclusive)
    {uniform: [0.5, 2]}                 the same, spelled out
    {normal: [1.0, 0.1]}                normal, mean 1.0, std 0.1
    {normal: [1.0, 0.1], min: 0.8, max: 1.2}   truncated normal (exact, inverse CDF)
    {loguniform: [0.01, 1]}             log-uniform, 0 < low <= high
    {choice: [a, b, c], weights: [3, 1, 1]}    weighted choice (numbers or names)
    {constant: 3}                       constant, spelled out

Never the global numpy state; nothing evaluated at import time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError
from .view import ConfigView

KINDS = ("constant", "uniform", "normal", "loguniform", "choice")


def _plain(spec: Any) -> Any:
    """OmegaConf containers -> plain python (lists, dicts)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(spec, (DictConfig, ListConfig)):
            return OmegaConf.to_container(spec, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return spec


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Dist:
    """A parsed distribution. ``support`` is (low, high) for numeric kinds (may be infinite)."""

    kind: str
    params: Tuple[Any, ...]
    weights: Optional[Tuple[float, ...]] = None
    low: float = -math.inf
    high: float = math.inf

    @property
    def support(self) -> Tuple[float, float]:
        if self.kind == "constant":
            return (self.params[0], self.params[0]) if _is_num(self.params[0]) else (math.nan, math.nan)
        if self.kind in ("uniform", "loguniform"):
            return self.params[0], self.params[1]
        if self.kind == "normal":
            return self.low, self.high
        nums = [v for v in self.params if _is_num(v)]
        return (min(nums), max(nums)) if len(nums) == len(self.params) else (math.nan, math.nan)

    def sample(self, rng: np.random.Generator, integer: bool = False):
        """One value. Every kind consumes exactly one ``rng.random()`` draw, so pinning a value
        (or changing its kind) never shifts what later draws from the same stream produce."""
        u = float(rng.random())
        k = self.kind
        if k == "constant":
            v = self.params[0]
        elif k == "uniform":
            a, b = self.params
            if integer:
                lo, hi = int(math.ceil(a)), int(math.floor(b))
                return min(lo + int(u * (hi - lo + 1)), hi)
            v = a + u * (b - a)
        elif k == "loguniform":
            a, b = self.params
            v = math.exp(math.log(a) + u * (math.log(b) - math.log(a)))
        elif k == "normal":
            v = _truncated_normal(self.params[0], self.params[1], self.low, self.high, u)
        else:  # choice
            w = np.ones(len(self.params)) if self.weights is None else np.asarray(self.weights, float)
            cdf = np.cumsum(w) / w.sum()
            v = self.params[min(int(np.searchsorted(cdf, u, side="right")), len(self.params) - 1)]
        if integer and _is_num(v):
            return int(round(v))
        return float(v) if _is_num(v) else v


def _truncated_normal(mean: float, std: float, low: float, high: float, u: float) -> float:
    """Inverse-CDF sample of a normal truncated to [low, high] from one uniform ``u``."""
    if std == 0:
        return float(min(max(mean, low), high))
    from scipy.special import ndtr, ndtri

    a, b = ndtr((low - mean) / std), ndtr((high - mean) / std)
    x = mean + std * float(ndtri(a + u * (b - a))) if b > a else (low if a >= 1 else high)
    return float(min(max(x, low), high))  # guard the tails against rounding


_PARSED: dict = {}  # id(read-only spec) -> (spec, Dist): the pipeline samples ~150 values a scene


def parse(name: str, spec: Any) -> Dist:
    """Parse and check a distribution spec; raise a one-line ConfigError naming ``name``.

    Specs of a read-only config (tuples and ConfigView mappings, see config.config_view)
    are parsed once: the entry keeps the spec alive, so its id cannot be reused."""
    if _is_num(spec) or isinstance(spec, str):
        return Dist("constant", (spec,))
    frozen = isinstance(spec, (tuple, ConfigView))
    if frozen:
        hit = _PARSED.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
    d = _parse(name, spec)
    if frozen:
        if len(_PARSED) >= 4096:  # specs made on the fly (tests, callers' own tuples): bounded
            _PARSED.clear()
        _PARSED[id(spec)] = (spec, d)
    return d


def _parse(name: str, spec: Any) -> Dist:
    spec = _plain(spec)
    fix = f"(fix: {name}=[1,2], {name}=1 or {name}={{normal:[1,0.1]}}; see README)"
    if isinstance(spec, bool) or spec is None:
        raise ConfigError(f"{name} must be a number or a distribution, got {spec!r} {fix}")
    if _is_num(spec) or isinstance(spec, str):
        return Dist("constant", (spec,))
    if isinstance(spec, (list, tuple)):
        if len(spec) == 2 and all(_is_num(v) for v in spec):
            return _uniform(name, spec[0], spec[1])
        raise ConfigError(f"{name} must be a number, [low, high] or a distribution, got {spec!r} {fix}")
    if not isinstance(spec, dict):
        raise ConfigError(f"{name}: cannot read {spec!r} as a distribution {fix}")
    kinds = [k for k in spec if k in KINDS]
    extra = sorted(set(spec) - set(KINDS) - {"min", "max", "weights"})
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{name}: a distribution needs exactly one of {', '.join(KINDS)}; got keys "
                          f"{sorted(spec)} {fix}")
    kind = kinds[0]
    arg = spec[kind]
    if kind == "constant":
        if not (_is_num(arg) or isinstance(arg, str)):
            raise ConfigError(f"{name}: constant must be a number or a name, got {arg!r}")
        return Dist("constant", (arg,))
    if kind in ("uniform", "loguniform", "normal"):
        if not (isinstance(arg, (list, tuple)) and len(arg) == 2 and all(_is_num(v) for v in arg)):
            raise ConfigError(f"{name}: {kind} takes two numbers, e.g. {{{kind}: [1, 2]}}, got {arg!r}")
    if kind == "uniform":
        return _uniform(name, *arg)
    if kind == "loguniform":
        a, b = float(arg[0]), float(arg[1])
        if a <= 0 or a > b:
            raise ConfigError(f"{name}: loguniform needs 0 < low <= high, got [{a:g}, {b:g}]")
        return Dist("loguniform", (a, b))
    if kind == "normal":
        mean, std = float(arg[0]), float(arg[1])
        if std < 0:
            raise ConfigError(f"{name}: normal std must be >= 0, got {std:g}")
        lo = float(spec.get("min", -math.inf))
        hi = float(spec.get("max", math.inf))
        if lo > hi:
            raise ConfigError(f"{name}: normal min {lo:g} is greater than max {hi:g}")
        return Dist("normal", (mean, std), low=lo, high=hi)
    # choice
    if not isinstance(arg, (list, tuple)) or not arg:
        raise ConfigError(f"{name}: choice takes a non-empty list, e.g. {{choice: [a, b]}}, got {arg!r}")
    weights = spec.get("weights")
    if weights is not None:
        if (not isinstance(weights, (list, tuple)) or len(weights) != len(arg)
                or not all(_is_num(w) and w >= 0 for w in weights) or sum(weights) <= 0):
            raise ConfigError(f"{name}: weights must be {len(arg)} non-negative numbers with a positive "
                              f"sum, got {weights!r}")
        weights = tuple(float(w) for w in weights)
    return Dist("choice", tuple(arg), weights=weights)


def _uniform(name: str, a, b) -> Dist:
    a, b = float(a), float(b)
    if a > b:
        raise ConfigError(f"{name}: low {a:g} is greater than high {b:g} (fix: {name}=[{b:g},{a:g}])")
    return Dist("uniform", (a, b))


def check_range(name: str, spec: Any, low: Optional[float] = None, high: Optional[float] = None,
                integer: bool = False) -> Dist:
    """Parse ``spec`` and check that every value it can produce lies in [low, high]."""
    d = parse(name, spec)
    lo, hi = d.support
    if math.isnan(lo):
        raise ConfigError(f"{name} must be numeric, got {spec!r}")
    if integer and d.kind in ("constant", "choice") and any(_is_num(v) and v != int(v) for v in d.params):
        raise ConfigError(f"{name} must hold integers, got {spec!r}")
    if integer and d.kind == "uniform" and math.floor(d.params[1]) < math.ceil(d.params[0]):
        raise ConfigError(f"{name}: [{d.params[0]:g}, {d.params[1]:g}] holds no integer")
    if low is not None and lo < low:
        what = "normal needs min: >= " if d.kind == "normal" and lo == -math.inf else "must be >= "
        raise ConfigError(f"{name} {what}{low:g}, got {spec!r}")
    if high is not None and hi > high:
        what = "normal needs max: <= " if d.kind == "normal" and hi == math.inf else "must be <= "
        raise ConfigError(f"{name} {what}{high:g}, got {spec!r}")
    return d


def check_choice(name: str, spec: Any, allowed: Sequence[str]) -> Dist:
    """A categorical spec: a name, a list of names (uniform) or {choice: [...], weights: [...]}."""
    spec = _plain(spec)
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(v, str) for v in spec):
        d = Dist("choice", tuple(spec))
    else:
        d = parse(name, spec)
    values = d.params if d.kind == "choice" else (d.params[0],) if d.kind == "constant" else ()
    if not values or any(v not in allowed for v in values):
        raise ConfigError(f"{name} must choose among {list(allowed)}, got {spec!r}")
    return d


def sample(spec: Any, rng: np.random.Generator, name: str = "value", integer: bool = False):
    """One value of ``spec`` (see module docstring)."""
    return parse(name, spec).sample(rng, integer=integer)


def sample_float(spec: Any, rng: np.random.Generator, name: str = "value") -> float:
    return float(parse(name, spec).sample(rng))


def sample_int(spec: Any, rng: np.random.Generator, name: str = "value") -> int:
    return int(parse(name, spec).sample(rng, integer=True))
