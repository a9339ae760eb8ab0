"""Photometric conditions: they change RGB values only, never a label."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import register


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@register("sensor_noise", "image", {"full_well": [150.0, 1500.0], "read_noise": [1.0, 6.0]},
          bounds={"full_well": (1.0, None), "read_noise": (0.0, None)})
def sensor_noise(frame, p, rng, scene):
    """Shot noise (Poisson, approximated as Gaussian with variance = electrons; `full_well`
    electrons at white) plus Gaussian read noise (`read_noise` in 8-bit levels)."""
    x = frame.rgb.astype(np.float32) / 255.0
    e = x * float(p["full_well"])
    e = e + rng.standard_normal(e.shape).astype(np.float32) * np.sqrt(np.maximum(e, 0.0))
    y = e / float(p["full_well"]) * 255.0 + rng.standard_normal(e.shape).astype(np.float32) * float(p["read_noise"])
    return replace(frame, rgb=_u8(y)), {}


@register("jpeg", "image", {"quality": [10, 50]},
          bounds={"quality": (1, 100)})
def jpeg(frame, p, rng, scene):
    """JPEG compression artefacts at `quality` (1-100), decoded back to RGB."""
    import cv2

    ok, buf = cv2.imencode(".jpg", frame.rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(p["quality"]))])
    return replace(frame, rgb=np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])), {}


@register("low_light", "image", {"gain": [0.1, 0.35], "gamma": [1.0, 1.4]},
          bounds={"gain": (0.0, 1.0), "gamma": (0.1, 5.0)})
def low_light(frame, p, rng, scene):
    """Under-exposure: linear `gain` < 1, then a `gamma` that crushes the shadows."""
    x = (frame.rgb.astype(np.float32) / 255.0 * float(p["gain"])) ** float(p["gamma"])
    return replace(frame, rgb=_u8(x * 255.0)), {}


@register("overexposure", "image", {"gain": [1.8, 3.5]},
          bounds={"gain": (1.0, None)})
def overexposure(frame, p, rng, scene):
    """Over-exposure: linear `gain` > 1 with clipping (blown highlights)."""
    return replace(frame, rgb=_u8(frame.rgb.astype(np.float32) * float(p["gain"]))), {}


@register("colour_cast", "image", {"red": [0.75, 1.25], "green": [0.85, 1.15], "blue": [0.75, 1.25]},
          bounds={"red": (0.0, None), "green": (0.0, None), "blue": (0.0, None)})
def colour_cast(frame, p, rng, scene):
    """White-balance error: per-channel gains."""
    g = np.array([p["red"], p["green"], p["blue"]], np.float32)
    return replace(frame, rgb=_u8(frame.rgb.astype(np.float32) * g)), {}


@register("fog", "image", {"density": [0.3, 1.5], "airlight": [0.65, 0.95]},
          bounds={"density": (0.0, None), "airlight": (0.0, 1.0)})
def fog(frame, p, rng, scene):
    """Depth-based haze (Koschmieder): I = J t + A (1 - t), t = exp(-density * depth[m]);
    pixels with no surface (depth 0) are infinitely far: pure airlight A (grey level)."""
    d = frame.depth.astype(np.float32)
    t = np.where(d > 0, np.exp(-float(p["density"]) * d), 0.0)[..., None]
    a = float(p["airlight"]) * 255.0
    return replace(frame, rgb=_u8(frame.rgb.astype(np.float32) * t + a * (1.0 - t))), {}
