"""Procedural images (pure numpy + OpenCV): object textures, floor textures and backgrounds,
plus colour helpers (HSV, black-body colour temperature).

Every image is a pure function of its TextureSpec (which carries its own seed), so it can be
regenerated anywhere. Object textures are made periodic so that UV repeat shows no seams.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import List, Tuple

import numpy as np

from .errors import AssetError
from .spec import TextureSpec

PROCEDURAL = ("noise", "checker", "stripes", "gradient", "wood", "tiles", "marble", "cells")
# wood: growth rings warped by noise; tiles: square tiles with grout lines and a little
# tone per tile; marble: veins (a sine warped by turbulent noise); cells: stones or
# pebbles (a periodic Voronoi pattern). All tile seamlessly, like the first four.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def hsv_to_rgb(h: float, s: float, v: float) -> List[float]:
    """h, s, v in [0, 1] -> [r, g, b] in [0, 1]."""
    h = (h % 1.0) * 6.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return list([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Colour of a black body at ``kelvin`` (1000..40000 K) as linear-ish RGB in [0, 1],
    normalised so the brightest channel is 1 (a fit to Mitchell Charity's blackbody table)."""
    t = min(max(float(kelvin), 1000.0), 40000.0) / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    if t <= 66:
        g = 99.4708025861 * math.log(t) - 161.1195681661
    else:
        g = 288.1221695283 * (t - 60) ** -0.0755148492
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307)
    rgb = np.clip(np.array([r, g, b]) / 255.0, 0.0, 1.0)
    return rgb / rgb.max()


def _periodic_noise(rng: np.random.Generator, size: int, base: float, octaves: int = 4) -> np.ndarray:
    """(size, size) float in [0, 1], tileable: band-limited noise from random Fourier phases,
    with features about ``size / base`` pixels wide."""
    out = np.zeros((size, size))
    f = np.fft.fftfreq(size) * size
    fx, fy = np.meshgrid(f, f)
    radius = np.hypot(fx, fy)
    phases = np.exp(2j * np.pi * rng.random((size, size)))
    for o in range(octaves):
        lo, hi = base * 2 ** o, base * 2 ** (o + 1)
        band = (radius >= lo) & (radius < hi)
        if not band.any():
            continue
        layer = np.real(np.fft.ifft2(band * phases))
        layer /= np.abs(layer).max() + 1e-12
        out += layer / (o + 1)
    out -= out.min()
    return out / (out.max() + 1e-12)


def _pattern(tex: TextureSpec, size: int, reps: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float mix factor in [0, 1] between tex.colors[0] and tex.colors[1];
    the pattern repeats ``reps`` times across (rounded so that the square tiles). Stripes and
    gradients vary along one axis: they come back as broadcast views of one row or column,
    which _mix colours once and repeats."""
    n = max(1, int(round(reps)))
    if tex.kind == "noise":
        # A few base fields per (size, frequency), varied by a periodic shift and a
        # transpose: stays tileable, costs no FFT per image. Fields are made at most
        # NOISE_RES pixels wide and upsampled (the noise is smooth): the bank stays ~100 MB at
        # any image size, where full-size fields took ~2 GB per process at 1920x1080.
        res = min(size, NOISE_RES)
        bank = _noise_bank(res, n)
        field = bank[int(rng.integers(len(bank)))]
        field = np.roll(field, (int(rng.integers(res)), int(rng.integers(res))), axis=(0, 1))
        field = field.T if rng.random() < 0.5 else field
        if res < size:  # backgrounds only: object and floor tiles are 256 pixels and stay periodic
            import cv2

            field = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
        return field
    t = (np.arange(size, dtype=np.float64) + 0.5) / size  # pixel centres in [0, 1): u along x, v along y
    a = math.radians(tex.angle_deg)
    along_x = math.cos(a) ** 2 >= 0.5

    def spread(profile):  # a profile along x (u) or y (v) as a (size, size) view
        return np.broadcast_to(profile[None, :] if along_x else profile[:, None], (size, size))

    if tex.kind in ("wood", "marble"):
        import cv2

        # a smooth periodic warp field (1-4 cycles per tile), made small and upsampled
        warp = _periodic_noise(rng, 64, 1.0, octaves=2 if tex.kind == "wood" else 3)
        warp = cv2.resize(warp, (size, size), interpolation=cv2.INTER_CUBIC)
        u = spread(t)
        if tex.kind == "wood":  # growth rings: 4 n per tile along one axis, bent by the warp
            ring = (u * 4 * n + 2.0 * warp) % 1.0
            return ring ** 4
        vein = np.abs(np.sin(np.pi * (u * n + 3.0 * warp)))  # integral n: periodic
        return (1.0 - vein) ** 8
    if tex.kind == "tiles":
        k = np.floor(t * n).astype(int)
        grout = (t * n) % 1.0 < 0.06
        tone = rng.random((n, n)) * 0.25  # each tile a slightly different shade of colors[0]
        return np.where(grout[None, :] | grout[:, None], 1.0, tone[k[:, None], k[None, :]])
    if tex.kind == "cells":  # stones: 3 n across, 4-17 cm on a floor at its default scales
        return _cells(size, 3 * n, rng)
    if tex.kind == "checker":
        f = np.floor(t * n)
        return (f[None, :] + f[:, None]) % 2
    if tex.kind == "stripes":  # axis-aligned so the tile stays periodic
        return spread(np.floor(t * 2 * n) % 2)
    if tex.kind == "gradient":
        return spread(np.abs(2 * ((t * n) % 1.0) - 1.0))  # triangle wave: no seams
    raise ValueError(f"unknown procedural texture {tex.kind!r}")


def _cells(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) periodic Voronoi pattern, about n x n cells: a random tone per cell, 1 on
    the borders (where the nearest and second-nearest seeds are about as far; distances on a
    torus, so the tile repeats)."""
    import cv2
    from scipy.spatial import cKDTree

    count = max(4, n * n)
    seeds = rng.random((count, 2))
    tone = rng.random(count) * 0.35
    res = min(size, 256)
    g = (np.arange(res) + 0.5) / res
    gx, gy = np.meshgrid(g, g)
    d, near = cKDTree(seeds, boxsize=1.0).query(np.column_stack([gx.ravel(), gy.ravel()]), k=2)
    edge = np.clip(1.0 - (d[:, 1] - d[:, 0]) * n * 12.0, 0.0, 1.0)
    m = np.maximum(tone[near[:, 0]], edge).reshape(res, res)
    if res < size:
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    return m


NOISE_RES = 512  # noise fields' largest side: frequencies up to 256 cycles across (4 octaves of scale 16)


@lru_cache(maxsize=64)
def _noise_bank(size: int, base: int, count: int = 4) -> Tuple[np.ndarray, ...]:
    return tuple(_periodic_noise(np.random.default_rng([size, base, k]), size, float(base))
                 for k in range(count))


def _mix(tex: TextureSpec, m: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: rint(255 ((1 - m) colors[0] + m colors[1])), clipped. One channel at a
    time into reused buffers (the same float64 operations, so the same bytes, ~3x faster than
    (H, W, 3) temporaries); a pattern that repeats one row or column is coloured once."""
    if m.ndim == 2 and m.strides[0] == 0 and m.shape[0] > 1:
        return np.ascontiguousarray(np.broadcast_to(_mix(tex, np.ascontiguousarray(m[:1])), m.shape + (3,)))
    if m.ndim == 2 and m.strides[1] == 0 and m.shape[1] > 1:
        return np.ascontiguousarray(np.broadcast_to(_mix(tex, np.ascontiguousarray(m[:, :1])), m.shape + (3,)))
    c = np.asarray(tex.colors, dtype=np.float64)
    if tex.kind in ("wood", "marble"):  # grain and veins: a darker shade of the first colour, tinted by the second
        c = np.stack([c[0], 0.55 * c[0] + 0.15 * c[1]])
    om = 1 - m
    acc, tmp = np.empty(m.shape), np.empty(m.shape)
    out = np.empty(m.shape + (3,), dtype=np.uint8)
    for ch in range(3):
        np.multiply(om, c[0, ch], out=acc)
        np.multiply(m, c[1, ch], out=tmp)
        acc += tmp
        acc *= 255
        np.rint(acc, out=acc)
        np.clip(acc, 0, 255, out=acc)
        out[..., ch] = acc
    return out


def texture_tile(tex: TextureSpec, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 tile covering one metre of box-projected UV space: the pattern
    repeats ``tex.scale`` times per metre. Images are used as they are (one per metre)."""
    rng = np.random.default_rng(tex.seed)
    if tex.kind == "image":
        return load_image(tex.path, size, size, rng)
    return _mix(tex, _pattern(tex, size, tex.scale, rng))


def background_image(tex: TextureSpec, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 background; patterns repeat ``tex.scale`` times across."""
    rng = np.random.default_rng(tex.seed)
    if tex.kind == "image":
        return load_image(tex.path, width, height, rng)
    side = max(width, height)
    if tex.kind == "gradient":  # one smooth ramp across the image reads better than a tiling
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        a = math.radians(tex.angle_deg)
        along = xx * math.cos(a) + yy * math.sin(a)
        m = (along - along.min()) / max(float(along.max() - along.min()), 1e-9)
        return _mix(tex, m)
    return _mix(tex, _pattern(tex, side, tex.scale, rng)[:height, :width])


@lru_cache(maxsize=64)
def _read_rgb(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - Pillow (and its plugins) raise many types
        raise AssetError(f"image '{path}' cannot be read ({type(exc).__name__}); replace or remove it") from None


def load_image(path: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``path`` with the target aspect ratio, resized to (height, width, 3)."""
    import cv2

    img = _read_rgb(path)
    h, w = img.shape[:2]
    target = width / height
    cw, ch = (w, int(round(w / target))) if w / h < target else (int(round(h * target)), h)
    cw, ch = max(1, min(cw, w)), max(1, min(ch, h))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def list_images(folder: str, what: str) -> Tuple[str, ...]:
    """Sorted image files of ``folder``; a ConfigError naming ``what`` if there are none."""
    from .errors import ConfigError

    if not os.path.isdir(folder):
        raise ConfigError(f"{what} '{folder}' is not a folder (fix: give a folder of images or null)")
    files = tuple(sorted(os.path.join(folder, f) for f in os.listdir(folder)
                         if f.lower().endswith(IMAGE_EXTS)))
    if not files:
        raise ConfigError(f"{what} '{folder}' holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def check_image_folders(cfg) -> None:
    """Open the header of every image in the config's image folders (texture_dir,
    background.image_dir) before the first image: an empty, truncated-to-nothing or
    non-image file is an AssetError naming it, not a failure when a camera first sees it."""
    from PIL import Image

    from .errors import AssetError

    for key, folder in (("materials.texture_dir", cfg.materials.texture_dir),
                        ("background.image_dir", cfg.background.image_dir)):
        if not folder:
            continue
        files = list_images(str(folder), key)
        bad = []
        for path in files:
            try:
                with Image.open(path) as im:
                    ok = im.size[0] > 0 and im.size[1] > 0
            except Exception:  # noqa: BLE001 - Pillow (and its plugins) raise many types
                ok = False
            if not ok:
                bad.append(path)
        if bad:
            raise AssetError(f"{key}: {len(bad)} of {len(files)} files cannot be read as images, the first "
                             f"'{bad[0]}' (fix: replace or remove them)")


def box_uv(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray):
    """Box-projected UVs in metres: each face takes the two coordinates orthogonal to its
    dominant normal axis. Returns (unmerged vertices (3F,3), faces (F,3), uv (3F,2))."""
    axis = np.argmax(np.abs(face_normals), axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # (F, 2)
    v = vertices[faces]  # (F, 3, 3)
    uv = np.take_along_axis(v, np.repeat(keep[:, None, :], 3, axis=1), axis=2)  # (F, 3, 2)
    return v.reshape(-1, 3), np.arange(len(faces) * 3).reshape(-1, 3), uv.reshape(-1, 2)
