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
from typing import Dict, List, Optional, Tuple

import numpy as np

SIZE_EDGES = (32 ** 2, 96 ** 2)  # COCO small / medium / large by area (pixels)
HEATMAP_BINS = 16


PIXEL_CHUNK = 64  # images per task of the pixel pass

# Coverage: where the camera is seen from in the object's own frame (8 azimuth sectors x 4
# bands of equal height in z: 32 cells of equal area on the sphere), and the object's size in
# frame (its amodal box's longer side as a share of the image's shorter side).
VIEW_AZIMUTHS, VIEW_BANDS = 8, 4
VIEW_BINS = VIEW_AZIMUTHS * VIEW_BANDS
COVERAGE_SIZE_EDGES = (0.0, 0.04, 0.08, 0.16, 0.32, 0.64)  # the last bin is open above


def view_bins(R_m2c, t_m2c) -> np.ndarray:
    """Per object, the equal-area cell (0..VIEW_BINS-1) of the direction from the object to
    the camera in the object's model frame (``R_m2c``: (n, 3, 3), ``t_m2c``: (n, 3)); -1 where
    the camera sits at the object's origin."""
    R, t = np.asarray(R_m2c, float).reshape(-1, 3, 3), np.asarray(t_m2c, float).reshape(-1, 3)
    v = -np.einsum("nji,nj->ni", R, t)  # -R^T t: the camera centre in the model frame
    n = np.linalg.norm(v, axis=1)
    ok = n > 0
    v = v / np.where(ok, n, 1.0)[:, None]
    az = ((np.arctan2(v[:, 1], v[:, 0]) + np.pi) / (2 * np.pi) * VIEW_AZIMUTHS).astype(int) % VIEW_AZIMUTHS
    band = np.minimum(((v[:, 2] + 1.0) / 2.0 * VIEW_BANDS).astype(int), VIEW_BANDS - 1)
    return np.where(ok, band * VIEW_AZIMUTHS + az, -1)


def view_bin(R_m2c, t_m2c) -> Optional[int]:
    """view_bins for one object; None when the camera sits at its origin."""
    b = int(view_bins(R_m2c, t_m2c)[0])
    return None if b < 0 else b


def size_bin(box, width: int, height: int) -> int:
    share = max(float(box[2]), float(box[3])) / max(1, min(int(width), int(height)))
    return int(np.searchsorted(COVERAGE_SIZE_EDGES, share, side="right")) - 1


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


SQRT_AREA_EDGES = tuple(range(0, 648, 8))  # pixels; the last bin, [632, 640), also holds larger boxes
BRIGHTNESS_EDGES = tuple(k / 20 for k in range(21))
FLAGS = ("no_labeled_object", "near_black", "blown_out", "degenerate_boxes", "fell_through_floor", "never_settled",
         "near_duplicates", "class_below_share")


class _Survey:
    """What the report says about a dataset, gathered one image at a time (its records and
    its pixel row): counters and fixed-bin histograms, so memory grows with the number of
    classes and bins, not of images. Only the flagged file names and the 8-byte hashes for
    the near-duplicate search are kept per image."""

    def __init__(self, categories: List[dict], thresholds: dict):
        self.cats = {c["id"]: c["name"] for c in categories}
        self.t = thresholds
        self.images = self.instances = 0
        self.per_class, self.images_per_class, self.per_image = Counter(), Counter(), Counter()
        self.conditions = Counter()
        self.sizes = Counter()
        self.sqrt_area = np.zeros(len(SQRT_AREA_EDGES) - 1, np.int64)
        self.heat = np.zeros((HEATMAP_BINS, HEATMAP_BINS), np.int64)
        self.vis = np.zeros(10, np.int64)
        self.trunc = np.zeros(10, np.int64)
        self.not_converged = self.resampled = 0
        self.read = 0  # images whose pixels were read
        self.bright = np.zeros(len(BRIGHTNESS_EDGES) - 1, np.int64)
        self.bright_sum, self.rgb_sum = 0.0, np.zeros(3)
        self.flags: Dict[str, list] = {k: [] for k in FLAGS}
        self.names: List[str] = []  # of the hashed images, for the near-duplicate pairs
        self.hashes: List[int] = []
        # per class: instances by (view cell, size bin), of those with a pose
        self.cover = {k: np.zeros((VIEW_BINS, len(COVERAGE_SIZE_EDGES)), np.int64) for k in self.cats}

    def add(self, img: dict, anns: List[dict], row: Optional[tuple]) -> None:
        t, cats, name = self.t, self.cats, img["file_name"]
        self.images += 1
        self.instances += len(anns)
        self.per_image[len(anns)] += 1
        classes = [cats[a["category_id"]] for a in anns]
        self.per_class.update(classes)
        self.images_per_class.update(set(classes))
        if anns:
            areas = np.array([a["area"] for a in anns], float)
            self.sizes.update({"small": int((areas < SIZE_EDGES[0]).sum()),
                               "medium": int(((areas >= SIZE_EDGES[0]) & (areas < SIZE_EDGES[1])).sum()),
                               "large": int((areas >= SIZE_EDGES[1]).sum())})
            k = np.minimum(np.sqrt(areas) // SQRT_AREA_EDGES[1], len(self.sqrt_area) - 1).astype(int)
            np.add.at(self.sqrt_area, k, 1)
            box = np.array([a["bbox"] for a in anns], float).reshape(-1, 4)
            cx = np.minimum(((box[:, 0] + box[:, 2] / 2) / img["width"] * HEATMAP_BINS).astype(int), HEATMAP_BINS - 1)
            cy = np.minimum(((box[:, 1] + box[:, 3] / 2) / img["height"] * HEATMAP_BINS).astype(int), HEATMAP_BINS - 1)
            np.add.at(self.heat, (cy, cx), 1)
            for hist, key, default in ((self.vis, "visibility", 1.0), (self.trunc, "truncation", 0.0)):
                v = np.array([a.get(key, default) for a in anns], float)
                np.add.at(hist, np.clip((v * 10).astype(int), 0, 9), 1)  # [0, 0.1), ..., [0.9, 1.0]
            posed = [a for a in anns if a.get("pose") and a["category_id"] in self.cover]
            if posed:
                cells = view_bins([a["pose"]["R_m2c"] for a in posed], [a["pose"]["t_m2c"] for a in posed])
                for a, v in zip(posed, cells):
                    if v >= 0:
                        self.cover[a["category_id"]][v, size_bin(a.get("amodal_bbox") or a["bbox"], img["width"],
                                                                 img["height"])] += 1
            if min(min(a["bbox"][2], a["bbox"][3]) for a in anns) <= t["degenerate_box_px"]:
                self.flags["degenerate_boxes"].append(name)
        else:
            self.flags["no_labeled_object"].append(name)
        self.conditions.update(list(img.get("conditions") or {}))  # names; the values are their parameters
        settle = img.get("settle") or {}
        self.not_converged += not settle.get("converged", True)
        self.resampled += settle.get("attempts", 1) - 1
        if settle.get("below_floor") or settle.get("fell_off"):
            self.flags["fell_through_floor"].append(name)
        if settle and not settle.get("converged", True):
            self.flags["never_settled"].append(name)
        if row is None:
            return
        self.read += 1
        self.bright[min(int(row[0] * (len(BRIGHTNESS_EDGES) - 1)), len(self.bright) - 1)] += 1
        self.bright_sum += row[0]
        self.rgb_sum += row[1:4]
        if row[0] < t["dark_mean"]:
            self.flags["near_black"].append(name)
        if row[4] > t["blown_fraction"]:
            self.flags["blown_out"].append(name)
        self.names.append(name)
        self.hashes.append(row[5])

    def statistics(self, with_pixels: bool) -> dict:
        cats = self.cats
        edges = np.linspace(0, 1, 11).round(2).tolist()
        stats = {
            "images": self.images, "instances": self.instances,
            "classes": [cats[k] for k in sorted(cats)],
            "instances_per_class": {cats[k]: int(self.per_class.get(cats[k], 0)) for k in sorted(cats)},
            "images_per_class": {cats[k]: int(self.images_per_class.get(cats[k], 0)) for k in sorted(cats)},
            "images_with_n_instances": [int(self.per_image.get(n, 0)) for n in range(max(self.per_image, default=0) + 1)],
            "box_sizes": {k: int(self.sizes.get(k, 0)) for k in ("small", "medium", "large")},
            "sqrt_area_hist": {"edges": list(SQRT_AREA_EDGES), "counts": self.sqrt_area.tolist()},
            "center_heatmap": self.heat.tolist(),
            "visibility_hist": {"edges": edges, "counts": self.vis.tolist()},
            "truncation_hist": {"edges": edges, "counts": self.trunc.tolist()},
            "conditions": dict(sorted(self.conditions.items())),
            "settle": {"not_converged": self.not_converged, "resampled": self.resampled},
            "coverage": self.coverage(),
        }
        if with_pixels:
            stats["brightness_hist"] = {"edges": list(BRIGHTNESS_EDGES), "counts": self.bright.tolist()}
            stats["mean_brightness"] = round(self.bright_sum / self.read, 6) if self.read else 0.0
            stats["mean_rgb"] = (self.rgb_sum / self.read).round(4).tolist() if self.read else [0, 0, 0]
        return stats

    def coverage(self) -> dict:
        """Per class: how many of the VIEW_BINS view cells, of the size bins and of their
        pairs hold an instance, and how evenly the views are spread (the entropy of the view
        histogram over its maximum, log VIEW_BINS: 1 is uniform, 0 one cell)."""
        per = {}
        for k in sorted(self.cats):
            h = self.cover[k]
            n = int(h.sum())
            views = h.sum(axis=1)
            p = views[views > 0] / n if n else np.zeros(0)
            per[self.cats[k]] = {"instances": n, "views": int((views > 0).sum()), "sizes": int((h.sum(axis=0) > 0).sum()),
                                 "cells": int((h > 0).sum()),
                                 "view_evenness": round(float(-(p * np.log(p)).sum() / np.log(VIEW_BINS)), 4),
                                 "size_counts": h.sum(axis=0).tolist()}
        return {"view_bins": VIEW_BINS, "size_edges": list(COVERAGE_SIZE_EDGES),
                "cells": VIEW_BINS * len(COVERAGE_SIZE_EDGES), "per_class": per}

    def quality_flags(self, dataset: str) -> Dict[str, list]:
        flags = {k: list(v) for k, v in self.flags.items()}
        for i, j in near_duplicates(self.hashes, int(self.t["duplicate_bits"])):
            flags["near_duplicates"].append([self.names[i], self.names[j]])
        total = sum(self.per_class.values())
        for name, share in _requested_shares(dataset, list(self.cats.values())).items():
            got = self.per_class.get(name, 0) / total if total else 0.0
            if got < self.t["class_share_ratio"] * share:
                flags["class_below_share"].append({"class": name, "share": round(got, 4), "requested": round(share, 4)})
        return flags


def _surveyed(coco, root: str, with_pixels: bool, thresholds: dict, processes: int) -> _Survey:
    from collections import deque

    from .parallel import chunked, ordered_map

    survey = _Survey(coco.categories, thresholds)
    if not with_pixels:
        for img, anns in coco:
            survey.add(img, anns, None)
        return survey
    held: deque = deque()  # the records of the chunks whose pixels are being read

    def paths():
        for chunk in chunked(coco, PIXEL_CHUNK):
            held.append(chunk)
            yield [os.path.join(root, img["file_name"]) for img, _ in chunk]

    for rows in ordered_map(_pixel_chunk, paths(), processes, local_first=True, what="reading images"):
        for (img, anns), row in zip(held.popleft(), rows):
            survey.add(img, anns, row)
    return survey


def survey(dataset: str, path: Optional[str] = None, image_root: Optional[str] = None, with_pixels: bool = True,
           thresholds: Optional[dict] = None, processes: int = 1) -> Tuple[dict, Dict[str, list]]:
    """(statistics, quality flags) of the COCO file ``path`` (default: the dataset's
    annotations.json) in one pass: the file is streamed (loaded whole only when it is not
    laid out as simgen writes it) and each image is read once (``with_pixels``), in
    ``processes`` processes when there are more than ``PIXEL_CHUNK``."""
    from .writers.coco import dataset_annotations, not_coco, read_coco

    t = dict(DEFAULT_THRESHOLDS)
    t.update(thresholds or {})
    path = path or os.path.join(dataset, "annotations.json")
    root = image_root or os.path.join(dataset, "images")
    dangling: List[dict] = []  # annotations of images the file lacks (when it is loaded whole)
    try:
        s = read_coco(dataset_annotations(path), lambda coco: _surveyed(coco, root, with_pixels, t, processes),
                      unknown=dangling.append)
    except (ValueError, KeyError) as exc:  # a broken or truncated file, or records without COCO's keys
        raise not_coco(path, exc) from None
    if dangling:
        import logging

        logging.getLogger("simgen").warning(f"{path}: {len(dangling)} annotation(s) of images not in the "
                                            f"file left out of the report (simgen validate names them)")
    stats = s.statistics(with_pixels)
    summary = os.path.join(dataset, "run_summary.json")
    if os.path.isfile(summary):
        r = json.load(open(summary))
        stats["render"] = {k: r.get(k) for k in ("images_per_second", "workers", "gl_renderer", "mean_stage_seconds")}
    return stats, s.quality_flags(dataset)


def statistics(dataset: str, image_root: Optional[str] = None, with_pixels: bool = True) -> dict:
    """Every number the report plots, as plain JSON-ready data (see :func:`survey`)."""
    return survey(dataset, image_root=image_root, with_pixels=with_pixels)[0]


def quality_flags(dataset: str, thresholds: Optional[dict] = None) -> Dict[str, list]:
    """Named problems, each with the images (file names) concerned; empty lists are clean."""
    return survey(dataset, thresholds=thresholds)[1]


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
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):  # class names are plain text
        return _figures(plt, out, stats, real)


def _figures(plt, out: dict, stats: dict, real: Optional[dict]) -> Dict[str, str]:
    """The plots of :func:`figures`, drawn into ``out``."""

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

    def hist(title, h: dict, real_h: Optional[dict] = None):
        """A histogram from its edges and counts (densities when compared with real data)."""
        fig, ax = plt.subplots(figsize=(6, 3))
        for label, d, alpha in (("synthetic", h, 0.7), ("real", real_h, 0.5)):
            if d is None:
                continue
            e, c = np.asarray(d["edges"], float), np.asarray(d["counts"], float)
            if real_h is not None and c.sum():
                c = c / c.sum() / np.diff(e)
            ax.bar(e[:-1], c, width=np.diff(e), align="edge", alpha=alpha, label=label)
        if real_h is not None:
            ax.legend()
        ax.set_title(title)
        out[title] = _png(fig)

    def per_image(s: Optional[dict]) -> Optional[dict]:
        if s is None:
            return None
        c = s["images_with_n_instances"]
        return {"edges": [n - 0.5 for n in range(len(c) + 1)], "counts": c}

    cmp = real is not None
    bars("Instances per class", stats["instances_per_class"], real and real["instances_per_class"], normalise=cmp)
    bars("Images per class", stats["images_per_class"], real and real["images_per_class"], normalise=cmp)
    hist("Instances per image", per_image(stats), per_image(real))
    bars("Box sizes (COCO)", stats["box_sizes"], real and real["box_sizes"], normalise=cmp)
    hist("sqrt(box area) [px] (last bin: 632 and more)", stats["sqrt_area_hist"], real and real["sqrt_area_hist"])
    fig, axes = plt.subplots(1, 2 if cmp else 1, figsize=(8 if cmp else 4, 3.6), squeeze=False)
    for ax, (label, s) in zip(axes[0], [("synthetic", stats)] + ([("real", real)] if cmp else [])):
        ax.imshow(np.array(s["center_heatmap"]), cmap="viridis", extent=(0, 1, 1, 0))
        ax.set_title(f"Box centres ({label})")
    out["Box centre heatmap"] = _png(fig)
    hist("Visibility", stats["visibility_hist"])
    hist("Truncation", stats["truncation_hist"])
    if "brightness_hist" in stats:
        hist("Image brightness (mean, 0-1)", stats["brightness_hist"], real and real.get("brightness_hist"))
    if stats["conditions"]:
        bars("Edge-case conditions applied (images)", stats["conditions"])
    return out


def write_report(dataset: str, out_dir: str, against: Optional[str] = None,
                 real_images: Optional[str] = None) -> str:
    """index.html (self-contained: plots embedded as PNG) and report.json in ``out_dir``."""
    from .config import usable_cores
    from .io import atomic_write_bytes

    stats, flags = survey(dataset, thresholds=_thresholds(dataset), processes=usable_cores())
    real = None
    if against:
        real_root = os.path.dirname(os.path.abspath(against))
        real = survey(real_root, against, image_root=real_images, with_pixels=real_images is not None,
                      processes=usable_cores())[0]
        real.pop("render", None)  # the run summary beside another dataset is not the real data's
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
    cov = stats["coverage"]
    parts.append(f"<h2>Coverage</h2><p>Per class: view directions in the object's frame ({cov['view_bins']} cells of "
                 f"equal area), sizes in frame (longer box side / shorter image side, bins from "
                 f"{', '.join(str(e) for e in cov['size_edges'])}) and their pairs ({cov['cells']}) that hold an "
                 f"instance; evenness 1 is a uniform spread over the view cells.</p><table><tr><th>class</th>"
                 f"<th>instances</th><th>views</th><th>sizes</th><th>view x size</th><th>evenness</th></tr>")
    nsz = len(cov["size_edges"])
    for name, c in cov["per_class"].items():
        parts.append(f"<tr><td>{html.escape(name)}</td><td>{c['instances']}</td><td>{c['views']}/{cov['view_bins']}"
                     f"</td><td>{c['sizes']}/{nsz}</td><td>{c['cells']}/{cov['cells']}</td>"
                     f"<td>{c['view_evenness']:.2f}</td></tr>")
    parts.append("</table>")
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
