"""Looking at a dataset: statistics, quality flags, plots, a self-contained HTML report, and
a comparison with a real COCO dataset. ``statistics`` and ``quality_flags`` are pure
functions of the dataset on disk (tested with known values); plotting only draws them."""
from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from typing import Dict, List, Optional

import numpy as np

SIZE_EDGES = (32 ** 2, 96 ** 2)  # COCO small / medium / large by area (pixels)
HEATMAP_BINS = 16


def load(dataset: str) -> dict:
    from .errors import SimGenError

    path = os.path.join(dataset, "annotations.json")
    if not os.path.isfile(path):
        raise SimGenError(f"{path} is missing: not a finished simgen dataset (fix: run simgen first)")
    return json.load(open(path, encoding="utf-8"))


PIXEL_CHUNK = 64  # images per task of the pixel pass


def _image_rgb(path: str) -> Optional[np.ndarray]:
    from .io import read_png

    try:
        if path.lower().endswith(".png"):
            return read_png(path)
        import cv2

        im = cv2.imread(path, cv2.IMREAD_COLOR)
        return None if im is None else im[..., ::-1]
    except OSError:
        return None


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash of an image (near-duplicates differ in few bits)."""
    import cv2

    f = rgb.astype(np.float32)
    grey = (f[..., 0] + f[..., 1] + f[..., 2]) / np.float32(3)  # = f.mean(axis=2), bit for bit, 4x faster
    g = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (g[:, 1:] > g[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _pixel_chunk(paths: List[str]) -> List[Optional[tuple]]:
    """Per image: (mean brightness 0..1, mean R, G, B 0..1, fraction of saturated pixels
    (a channel >= 250), difference hash), or None when it cannot be read."""
    import cv2

    cv2.setNumThreads(0)
    out = []
    for path in paths:
        rgb = _image_rgb(path)
        if rgb is None:
            out.append(None)
            continue
        mean = np.array(cv2.mean(rgb)[:3]) / 255.0
        top = cv2.max(cv2.max(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
        out.append((float(mean.mean()), *mean.tolist(), np.count_nonzero(top >= 250) / top.size, dhash(rgb)))
    return out


def pixel_stats(dataset: str, coco: dict, image_root: Optional[str] = None, processes: int = 1) -> List[Optional[tuple]]:
    """:func:`_pixel_chunk`'s values for every image of ``coco``, in its order; each image is
    read once, in ``processes`` processes when there are more than ``PIXEL_CHUNK``."""
    from .parallel import chunked, ordered_map

    root = image_root or os.path.join(dataset, "images")
    paths = (os.path.join(root, img["file_name"]) for img in coco["images"])
    return [row for done in ordered_map(_pixel_chunk, chunked(paths, PIXEL_CHUNK), processes, local_first=True,
                                          what="reading images")
            for row in done]


def near_duplicates(hashes: List[int], bits: int) -> List[tuple]:
    """Pairs (i, j), i < j, in order, of hashes within ``bits`` differing bits. Pigeonhole: two
    64-bit hashes that differ in at most ``bits`` bits agree exactly on at least one of
    ``bits`` + 1 slices, so only hashes sharing a slice are compared (all pairs before:
    minutes at 10,000 images, days at a million)."""
    n = len(hashes)
    if n < 2:
        return []
    h = np.array(hashes, dtype=np.uint64)
    edges = np.linspace(0, 64, bits + 2).astype(int)
    found = set()
    for lo, hi in zip(edges[:-1], edges[1:]):
        key = (h >> np.uint64(lo)) & np.uint64((1 << int(hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        for a, b in zip(starts, np.r_[starts[1:], n]):
            if b - a < 2:
                continue
            group = np.sort(order[a:b])
            g = h[group]
            rows = max(1, (1 << 22) // len(group))  # a block of rows against the group: <= 32 MB at a time
            for r in range(0, len(group) - 1, rows):
                close = np.bitwise_count(g[r:r + rows, None] ^ g[None, :]) <= bits
                i, j = np.nonzero(np.triu(close, r + 1))  # column > row: each pair once
                found.update(zip(group[r + i].tolist(), group[j].tolist()))
    return sorted(found)


def statistics(dataset: str, coco: Optional[dict] = None, image_root: Optional[str] = None,
               with_pixels: bool = True, pixels: Optional[List[Optional[tuple]]] = None) -> dict:
    """Every number the report plots, as plain JSON-ready data (``pixels``: the dataset's
    :func:`pixel_stats`, computed here when not given)."""
    coco = coco or load(dataset)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    anns = coco["annotations"]
    imgs = {i["id"]: i for i in coco["images"]}
    per_class = Counter(cats[a["category_id"]] for a in anns)
    per_image = Counter(a["image_id"] for a in anns)
    classes_of: Dict[int, set] = {}
    for a in anns:
        classes_of.setdefault(a["image_id"], set()).add(cats[a["category_id"]])
    images_per_class = Counter(name for iid in imgs for name in classes_of.get(iid, ()))
    areas = np.array([a["area"] for a in anns], float)
    size_buckets = {"small": int((areas < SIZE_EDGES[0]).sum()),
                    "medium": int(((areas >= SIZE_EDGES[0]) & (areas < SIZE_EDGES[1])).sum()),
                    "large": int((areas >= SIZE_EDGES[1]).sum())}
    heat = np.zeros((HEATMAP_BINS, HEATMAP_BINS), int)
    for a in anns:
        im = imgs[a["image_id"]]
        x, y, w, h = a["bbox"]
        cx = min(int((x + w / 2) / im["width"] * HEATMAP_BINS), HEATMAP_BINS - 1)
        cy = min(int((y + h / 2) / im["height"] * HEATMAP_BINS), HEATMAP_BINS - 1)
        heat[cy, cx] += 1
    edges = np.linspace(0, 1, 11)
    vis = np.histogram([a.get("visibility", 1.0) for a in anns], bins=edges)[0]
    trunc = np.histogram([a.get("truncation", 0.0) for a in anns], bins=edges)[0]
    conditions = Counter(name for im in coco["images"] for name in (im.get("conditions") or {}))
    stats = {
        "images": len(imgs), "instances": len(anns),
        "classes": [cats[k] for k in sorted(cats)],
        "instances_per_class": {cats[k]: int(per_class.get(cats[k], 0)) for k in sorted(cats)},
        "images_per_class": {cats[k]: int(images_per_class.get(cats[k], 0)) for k in sorted(cats)},
        "instances_per_image": [int(per_image.get(i, 0)) for i in sorted(imgs)],
        "box_sizes": size_buckets,
        "sqrt_area": [round(float(v), 3) for v in np.sqrt(areas)],
        "center_heatmap": heat.tolist(),
        "visibility_hist": {"edges": edges.round(2).tolist(), "counts": vis.tolist()},
        "truncation_hist": {"edges": edges.round(2).tolist(), "counts": trunc.tolist()},
        "conditions": dict(sorted(conditions.items())),
        "settle": {"not_converged": sum(1 for i in coco["images"] if not (i.get("settle") or {}).get("converged", True)),
                   "resampled": sum((i.get("settle") or {}).get("attempts", 1) - 1 for i in coco["images"])},
    }
    summary = os.path.join(dataset, "run_summary.json")
    if os.path.isfile(summary):
        s = json.load(open(summary))
        stats["render"] = {k: s.get(k) for k in ("images_per_second", "workers", "gl_renderer", "mean_stage_seconds")}
    if with_pixels:
        rows = [r for r in (pixels if pixels is not None else pixel_stats(dataset, coco, image_root)) if r]
        stats["brightness"] = [round(r[0], 4) for r in rows]
        stats["mean_rgb"] = np.mean([r[1:4] for r in rows], axis=0).round(4).tolist() if rows else [0, 0, 0]
    return stats


def quality_flags(dataset: str, coco: Optional[dict] = None, thresholds: Optional[dict] = None,
                  pixels: Optional[List[Optional[tuple]]] = None) -> Dict[str, list]:
    """Named problems, each with the images (file names) concerned; empty lists are clean
    (``pixels``: the dataset's :func:`pixel_stats`, computed here when not given)."""
    t = dict(DEFAULT_THRESHOLDS)
    t.update(thresholds or {})
    coco = coco or load(dataset)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    anns_by = {i["id"]: [] for i in coco["images"]}
    for a in coco["annotations"]:
        anns_by[a["image_id"]].append(a)
    flags: Dict[str, list] = {k: [] for k in ("no_labeled_object", "near_black", "blown_out", "degenerate_boxes",
                                            "fell_through_floor", "never_settled", "near_duplicates",
                                            "class_below_share")}
    if pixels is None:
        pixels = pixel_stats(dataset, coco)
    hashed = []
    for img, row in zip(coco["images"], pixels):
        name = img["file_name"]
        if not anns_by[img["id"]]:
            flags["no_labeled_object"].append(name)
        if any(min(a["bbox"][2], a["bbox"][3]) <= t["degenerate_box_px"] for a in anns_by[img["id"]]):
            flags["degenerate_boxes"].append(name)
        settle = img.get("settle") or {}
        if settle.get("below_floor") or settle.get("fell_off"):
            flags["fell_through_floor"].append(name)
        if settle and not settle.get("converged", True):
            flags["never_settled"].append(name)
        if row is None:
            continue
        if row[0] < t["dark_mean"]:
            flags["near_black"].append(name)
        if row[4] > t["blown_fraction"]:
            flags["blown_out"].append(name)
        hashed.append((name, row[5]))
    for i, j in near_duplicates([h for _, h in hashed], int(t["duplicate_bits"])):
        flags["near_duplicates"].append([hashed[i][0], hashed[j][0]])
    counts = Counter(cats[a["category_id"]] for a in coco["annotations"])
    total = sum(counts.values())
    weights = _requested_shares(dataset, list(cats.values()))
    for name, share in weights.items():
        got = counts.get(name, 0) / total if total else 0.0
        if got < t["class_share_ratio"] * share:
            flags["class_below_share"].append({"class": name, "share": round(got, 4), "requested": round(share, 4)})
    return flags


DEFAULT_THRESHOLDS = {
    "dark_mean": 0.06,  # mean brightness (0..1) below which an image is near-black
    "blown_fraction": 0.4,  # fraction of saturated pixels above which an image is blown out
    "degenerate_box_px": 2,  # boxes with a side of this many pixels or fewer
    "duplicate_bits": 3,  # difference-hash bits within which two images are near-duplicates
    "class_share_ratio": 0.5,  # a class below this fraction of its requested share is flagged
}


def _requested_shares(dataset: str, classes: List[str]) -> Dict[str, float]:
    """Requested class shares from the dataset's config (class weights), else uniform."""
    weights = {c: 1.0 for c in classes}
    path = os.path.join(dataset, "config.yaml")
    if os.path.isfile(path):
        import yaml

        cfg = yaml.safe_load(open(path)) or {}
        for k, v in ((cfg.get("objects") or {}).get("class_weights") or {}).items():
            if k in weights:
                weights[k] = float(v)
    s = sum(weights.values()) or 1.0
    return {k: v / s for k, v in weights.items()}


# ---- plots and HTML ------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(stats: dict, real: Optional[dict] = None) -> Dict[str, str]:
    """Title -> base64 PNG for each plot (synthetic beside real when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}

    def bars(title, data: dict, real_data: Optional[dict] = None, normalise=False):
        fig, ax = plt.subplots(figsize=(7, 3))
        keys = list(data) if real_data is None else sorted(set(data) | set(real_data))
        x = np.arange(len(keys))
        vals = np.array([data.get(k, 0) for k in keys], float)
        if normalise and vals.sum():
            vals = vals / vals.sum()
        w = 0.4 if real_data is not None else 0.8
        ax.bar(x - (w / 2 if real_data is not None else 0), vals, w, label="synthetic")
        if real_data is not None:
            rv = np.array([real_data.get(k, 0) for k in keys], float)
            ax.bar(x + w / 2, rv / rv.sum() if normalise and rv.sum() else rv, w, label="real")
            ax.legend()
        ax.set_xticks(x, keys, rotation=45, ha="right")
        ax.set_title(title)
        out[title] = _png(fig)

    def hist(title, values, real_values=None, bins=20, rng=None):
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(values, bins=bins, range=rng, alpha=0.7, density=real_values is not None, label="synthetic")
        if real_values is not None:
            ax.hist(real_values, bins=bins, range=rng, alpha=0.5, density=True, label="real")
            ax.legend()
        ax.set_title(title)
        out[title] = _png(fig)

    cmp = real is not None
    bars("Instances per class", stats["instances_per_class"], real and real["instances_per_class"], normalise=cmp)
    bars("Images per class", stats["images_per_class"], real and real["images_per_class"], normalise=cmp)
    hist("Instances per image", stats["instances_per_image"], real and real["instances_per_image"],
         bins=range(0, max(stats["instances_per_image"] + [1]) + 2))
    bars("Box sizes (COCO)", stats["box_sizes"], real and real["box_sizes"], normalise=cmp)
    hist("sqrt(box area) [px]", stats["sqrt_area"], real and real["sqrt_area"], bins=30)
    fig, axes = plt.subplots(1, 2 if cmp else 1, figsize=(8 if cmp else 4, 3.6), squeeze=False)
    for ax, (label, s) in zip(axes[0], [("synthetic", stats)] + ([("real", real)] if cmp else [])):
        ax.imshow(np.array(s["center_heatmap"]), cmap="viridis", extent=(0, 1, 1, 0))
        ax.set_title(f"Box centres ({label})")
    out["Box centre heatmap"] = _png(fig)
    for key, title in (("visibility_hist", "Visibility"), ("truncation_hist", "Truncation")):
        fig, ax = plt.subplots(figsize=(6, 3))
        e = np.array(stats[key]["edges"])
        ax.bar(e[:-1], stats[key]["counts"], width=np.diff(e), align="edge")
        ax.set_title(title)
        out[title] = _png(fig)
    if "brightness" in stats:
        hist("Image brightness (mean, 0-1)", stats["brightness"], real and real.get("brightness"), bins=20, rng=(0, 1))
    if stats["conditions"]:
        bars("Edge-case conditions applied (images)", stats["conditions"])
    return out


def write_report(dataset: str, out_dir: str, against: Optional[str] = None,
                 real_images: Optional[str] = None) -> str:
    """index.html (self-contained: plots embedded as PNG) and report.json in ``out_dir``."""
    from .config import usable_cores
    from .io import atomic_write_bytes

    coco = load(dataset)
    pixels = pixel_stats(dataset, coco, processes=usable_cores())
    stats = statistics(dataset, coco, pixels=pixels)
    real = None
    if against:
        real_coco = json.load(open(against, encoding="utf-8"))
        real_root = os.path.dirname(os.path.abspath(against))
        real_pixels = (pixel_stats(real_root, real_coco, image_root=real_images, processes=usable_cores())
                       if real_images is not None else None)
        real = statistics(real_root, real_coco, image_root=real_images, with_pixels=real_images is not None,
                          pixels=real_pixels)
    flags = quality_flags(dataset, coco, _thresholds(dataset), pixels)
    figs = figures(stats, real)
    os.makedirs(out_dir, exist_ok=True)
    doc = {"dataset": os.path.abspath(dataset), "statistics": stats, "quality_flags": flags}
    if real is not None:
        doc["real"] = real
    atomic_write_bytes(os.path.join(out_dir, "report.json"), json.dumps(doc, indent=1).encode())
    parts = [f"<h1>simgen report</h1><p>{html.escape(os.path.abspath(dataset))}: {stats['images']} images, "
             f"{stats['instances']} instances, {len(stats['classes'])} classes"
             + (f"; compared with {html.escape(against)}" if against else "") + "</p>"]
    if "render" in stats:
        r = stats["render"]
        parts.append(f"<p>Render: {r.get('images_per_second')} images/s with {r.get('workers')} worker(s) on "
                     f"{html.escape(str(r.get('gl_renderer')))}; {stats['settle']['not_converged']} scenes did not "
                     f"settle, {stats['settle']['resampled']} resampled.</p>")
    parts.append("<h2>Quality flags</h2><ul>")
    for name, items in flags.items():
        parts.append(f"<li><b>{name}</b>: {len(items)}" +
                     (f" <small>{html.escape(json.dumps(items[:20]))}</small>" if items else "") + "</li>")
    parts.append("</ul><h2>Plots</h2>")
    for title, b64 in figs.items():
        parts.append(f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{html.escape(title)}</figcaption></figure>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>simgen report</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}figure{display:inline-block;"
            "margin:8px}img{max-width:480px}</style></head><body>" + "".join(parts) +
            "<script>window.addEventListener('load',()=>{const bad=[...document.images].filter("
            "i=>!i.complete||i.naturalWidth===0).length;document.body.dataset.brokenImages=bad;"
            "document.body.dataset.images=document.images.length;});</script></body></html>")
    path = os.path.join(out_dir, "index.html")
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def _thresholds(dataset: str) -> dict:
    path = os.path.join(dataset, "config.yaml")
    if os.path.isfile(path):
        import yaml

        return (yaml.safe_load(open(path)) or {}).get("quality") or {}
    return {}
