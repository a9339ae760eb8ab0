"""simgen evaluate: a detector's predictions against a labeled dataset, overall (pycocotools'
COCOeval: the numbers people compare) and slice by slice, so a user learns *where* it fails.

Input: a COCO instances file (a simgen dataset's ``annotations.json``, or any COCO file: real
data has fewer fields, so only the slices it has) and predictions in the COCO results format
``[{image_id, category_id, bbox, score}]``. Output (``eval.json``): COCO mAP overall and per
class, and for every slice value its ground-truth count, recall at IoU ``iou`` (a ground-truth
object is found when COCOeval matches it with a detection scoring at least ``score``) and a
95% bootstrap interval over images, so a slice of 12 objects is not read as a finding; the
worst slices with at least ``min_count`` objects first.

Slices (each only where the dataset has the field): class, COCO size, visibility,
truncation, difficulty, each edge-case condition of the image (an object is in the slice of
every condition its image had, and in ``none`` when it had none), objects in the image,
camera distance to the object, camera elevation, the direction the camera sees the object
from in the object's own frame (above / side / below, and front / left / back / right around
its z axis), and, where the images can be read, the brightness of the object's box."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import SimGenError

EVAL_FILE = "eval.json"
BOOTSTRAP = 1000  # resamples of the images for each slice's interval
BOOTSTRAP_MAX_IMAGES = 20000  # above: the interval of the ratio estimator (delta method) instead
MISSED_EXAMPLES = 24  # missed objects drawn on the page (a random sample)


def _bins(edges: List[float], labels: List[str]) -> Callable[[float], str]:
    def label(x: float) -> str:
        for hi, name in zip(edges[1:], labels):
            if x < hi:
                return name
        return labels[-1]

    return label


_VIS = _bins([0, 0.25, 0.5, 0.75, math.inf], ["0-0.25", "0.25-0.5", "0.5-0.75", "0.75-1"])
_TRUNC = _bins([0, 1e-9, 0.25, 0.5, math.inf], ["0", "0-0.25", "0.25-0.5", "0.5-1"])
_SIZE = _bins([0, 32 ** 2, 96 ** 2, math.inf], ["small", "medium", "large"])
_COUNT = _bins([1, 2, 4, 7, 11, math.inf], ["1", "2-3", "4-6", "7-10", "11+"])
_DIST = _bins([0, 0.5, 0.8, 1.2, 2.0, math.inf], ["<0.5 m", "0.5-0.8 m", "0.8-1.2 m", "1.2-2 m", ">2 m"])
_ELEV = _bins([-90, 15, 30, 45, 60, 75, math.inf], ["<15 deg", "15-30 deg", "30-45 deg", "45-60 deg", "60-75 deg",
                                                   "75-90 deg"])
_BRIGHT = _bins([0, 0.2, 0.4, 0.6, 0.8, math.inf], ["0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1"])
_FROM = _bins([-90, -30, 30, math.inf], ["below", "side", "above"])
_AROUND = _bins([-180, -135, -45, 45, 135, math.inf], ["back", "right", "front", "left", "back"])


# the values of the binned slices in their natural order (others sort by name)
_ORDER = {v: k for k, v in enumerate(
    ["small", "medium", "large", "0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1", "0", "0-0.25", "0.25-0.5", "0.5-0.75", "0.75-1", "1", "2-3", "4-6", "7-10", "11+",
     "<0.5 m", "0.5-0.8 m", "0.8-1.2 m", "1.2-2 m", ">2 m", "<15 deg", "15-30 deg", "30-45 deg", "45-60 deg",
     "60-75 deg", "75-90 deg", "below", "side", "above", "front", "left", "back", "right",
     "easy", "moderate", "hard", "beyond_hard", "none"])}


def _camera_in_model(ann: dict) -> Optional[np.ndarray]:
    """The camera's position in the object's model frame (metres), from the annotation's pose."""
    pose = ann.get("pose")
    try:
        R, t = np.asarray(pose["R_m2c"], float), np.asarray(pose["t_m2c"], float)
    except (TypeError, KeyError, ValueError):
        return None
    return None if R.shape != (3, 3) or t.shape != (3,) else -R.T @ t


def _elevation(img: dict) -> Optional[str]:
    try:
        forward = np.asarray(img["cam_pose"], float)[:3, 2]  # OpenCV camera z, in the world
    except (TypeError, KeyError, ValueError, IndexError):
        return None
    return _ELEV(math.degrees(math.asin(max(-1.0, min(1.0, -forward[2])))))


def slice_labels(ann: dict, img: dict, n_in_image: int, category: str) -> Dict[str, List[str]]:
    """slice name -> the values (usually one) this ground-truth object has; absent fields, no slice."""
    out: Dict[str, List[str]] = {"class": [category]}
    if isinstance(ann.get("area"), (int, float)):
        out["size"] = [_SIZE(float(ann["area"]))]
    for key, fn in (("visibility", _VIS), ("truncation", _TRUNC)):
        if isinstance(ann.get(key), (int, float)):
            out[key] = [fn(float(ann[key]))]
    if isinstance(ann.get("difficulty"), str):
        out["difficulty"] = [ann["difficulty"]]
    if isinstance(img.get("conditions"), dict):
        out["condition"] = sorted(img["conditions"]) or ["none"]
    out["objects_in_image"] = [_COUNT(n_in_image)]
    cam = _camera_in_model(ann)
    if cam is not None and np.linalg.norm(cam) > 0:
        out["distance"] = [_DIST(float(np.linalg.norm(cam)))]
        d = cam / np.linalg.norm(cam)
        out["seen_from"] = [_FROM(math.degrees(math.asin(max(-1.0, min(1.0, d[2])))))]
        out["seen_around"] = [_AROUND(math.degrees(math.atan2(d[1], d[0])))]
    elev = _elevation(img)
    if elev is not None:
        out["camera_elevation"] = [elev]
    return out


def load_predictions(path: str, image_ids, category_ids) -> List[dict]:
    """The COCO results file at ``path``, checked: one line naming the first problem."""
    from .io import load_json

    dets = load_json(path, "the --predictions COCO results file",
                     "give a COCO results file, a list of {image_id, category_id, bbox, score}")
    if not isinstance(dets, list):
        raise SimGenError(f"--predictions {path} holds a {type(dets).__name__}, not a list of detections (fix: "
                          f"[{{image_id, category_id, bbox: [x, y, w, h], score}}, ...])")
    out = []
    for k, d in enumerate(dets):
        where = f"--predictions {path}, detection {k}"
        if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(d):
            raise SimGenError(f"{where}: needs image_id, category_id, bbox and score, got {str(d)[:80]}")
        b = d["bbox"]
        if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                            for v in b) and b[2] >= 0 and b[3] >= 0):
            raise SimGenError(f"{where}: bbox must be [x, y, w, h], four finite numbers, w and h >= 0, got {b!r}")
        if not isinstance(d["score"], (int, float)) or not math.isfinite(d["score"]):
            raise SimGenError(f"{where}: score must be a number, got {d['score']!r}")
        if d["image_id"] not in image_ids:
            raise SimGenError(f"{where}: image_id {d['image_id']!r} is not in the dataset (fix: use the dataset's "
                              f"COCO image ids)")
        if d["category_id"] not in category_ids:
            raise SimGenError(f"{where}: category_id {d['category_id']!r} is not in the dataset's categories "
                              f"(fix: map your classes to its category ids)")
        out.append({"image_id": d["image_id"], "category_id": d["category_id"], "bbox": [float(v) for v in b],
                    "score": float(d["score"])})
    return out


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _interval(n: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> Tuple[float, float, str]:
    """95% interval of sum(m) / sum(n) over images (n: objects of the slice per image, m:
    found): the bootstrap's percentiles, or for many images the delta method's."""
    k = len(n)
    if k <= BOOTSTRAP_MAX_IMAGES:
        stats = []
        for start in range(0, BOOTSTRAP, 100):
            idx = rng.integers(0, k, size=(min(100, BOOTSTRAP - start), k))
            stats.append(m[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1))
        lo, hi = np.percentile(np.concatenate(stats), [2.5, 97.5])
        return float(lo), float(hi), "bootstrap"
    r = m.sum() / n.sum()
    se = math.sqrt(k / (k - 1) * float(((m - r * n) ** 2).sum())) / float(n.sum())
    return max(0.0, r - 1.96 * se), min(1.0, r + 1.96 * se), "delta"


def _image_reader(root: Optional[str]):
    """file_name -> (H,W) float32 luminance in [0, 1] of the image under ``root`` (its
    ``images/`` folder when it has one), or None when it cannot be read; the last one is kept."""
    last: List[object] = [None, None]

    def read(name) -> Optional[np.ndarray]:
        if root is None or not isinstance(name, str):
            return None
        if last[0] != name:
            from .io import read_png

            sub = os.path.join(root, "images")
            path = os.path.join(sub if os.path.isdir(sub) else root, name)
            try:
                rgb = read_png(path).astype(np.float32)
                last[1] = (rgb[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0 if rgb.ndim == 3 \
                    else rgb / (65535.0 if rgb.max(initial=0) > 255 else 255.0)
            except OSError:
                last[1] = None
            last[0] = name
        return last[1]

    return read


def box_brightness(lum: np.ndarray, bbox) -> Optional[float]:
    """Mean luminance (0..1) of an [x, y, w, h] box's pixels, or None for an empty box."""
    x, y, w, h = (int(round(v)) for v in bbox)
    crop = lum[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)]
    return float(crop.mean()) if crop.size else None


def evaluate(annotations: str, predictions: str, iou: float = 0.5, score: float = 0.0, min_count: int = 30,
             seed: int = 0, image_root: Optional[str] = None) -> dict:
    """The evaluation (eval.json's content) of the COCO results file ``predictions`` against
    the COCO instances file ``annotations``; with ``image_root`` (the images' folder, or the
    dataset's with an ``images/`` in it) also the ``brightness`` slice (the mean luminance of
    each object's box)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    try:
        with open(annotations, encoding="utf-8") as f:
            doc = json.load(f)
        images, anns, cats = doc["images"], doc["annotations"], doc["categories"]
    except FileNotFoundError:
        raise SimGenError(f"{annotations}: no such file (fix: point simgen evaluate at a dataset folder or a COCO "
                          f"annotations JSON)") from None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise SimGenError(f"{annotations} is not a COCO instances file ({type(exc).__name__}: {exc}); fix: give "
                          f"a dataset's annotations.json") from None
    gt = COCO()
    gt.dataset = doc
    _quiet(gt.createIndex)
    dets = load_predictions(predictions, gt.imgs, gt.cats)
    E = COCOeval(gt, _quiet(gt.loadRes, dets) if dets else COCO(), "bbox")
    if not dets:
        E.cocoDt.dataset = {"images": images, "annotations": [], "categories": cats}
        _quiet(E.cocoDt.createIndex)
    t = int(np.argmin(np.abs(E.params.iouThrs - iou)))
    if abs(E.params.iouThrs[t] - iou) > 1e-6:
        raise SimGenError(f"--iou {iou}: COCOeval matches at 0.50, 0.55, ..., 0.95 (fix: one of those)")
    _quiet(E.evaluate)
    _quiet(E.accumulate)
    _quiet(E.summarize)
    names = ("map", "map50", "map75", "map_small", "map_medium", "map_large")
    overall = {k: round(float(v), 4) for k, v in zip(names, E.stats[:6])}
    prec = E.eval["precision"]  # (T, R, K, A, M)
    per_class = {}
    for k, cid in enumerate(E.params.catIds):
        p, p50 = prec[:, :, k, 0, -1], prec[t, :, k, 0, -1]
        per_class[gt.cats[cid]["name"]] = {"ap": round(float(p[p > -1].mean()), 4) if (p > -1).any() else None,
                                           f"ap{int(round(iou * 100))}": round(float(p50[p50 > -1].mean()), 4)
                                           if (p50 > -1).any() else None,
                                           "instances": len(gt.getAnnIds(catIds=[cid], iscrowd=False))}
    # Which ground-truth objects were found: COCOeval's own matches (area 'all', 100 detections).
    dscore = {d["id"]: d["score"] for d in E.cocoDt.dataset["annotations"]}
    found: Dict[int, bool] = {}
    for e in E.evalImgs:
        if e is None or e["aRng"] != E.params.areaRng[0]:
            continue
        for g, match, ign in zip(e["gtIds"], e["gtMatches"][t], e["gtIgnore"]):
            if not ign:
                found[g] = bool(match) and dscore.get(int(match), 0.0) >= score
    index = {im["id"]: k for k, im in enumerate(images)}
    per_image = {}
    for a in anns:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    counts: Dict[Tuple[str, str], Tuple[np.ndarray, np.ndarray]] = {}
    luminance = _image_reader(image_root)
    for a in anns:
        if a["id"] not in found:  # ignored (iscrowd): not a positive
            continue
        img = gt.imgs[a["image_id"]]
        labels = slice_labels(a, img, per_image[a["image_id"]], gt.cats[a["category_id"]]["name"])
        lum = luminance(img.get("file_name"))
        b = box_brightness(lum, a["bbox"]) if lum is not None else None
        if b is not None:
            labels["brightness"] = [_BRIGHT(b)]
        for name, values in labels.items():
            for v in values:
                n, m = counts.setdefault((name, v), (np.zeros(len(images), np.int64), np.zeros(len(images), np.int64)))
                n[index[a["image_id"]]] += 1
                m[index[a["image_id"]]] += found[a["id"]]
    rng = np.random.default_rng(seed)
    slices: Dict[str, List[dict]] = {}
    for (name, v), (n, m) in sorted(counts.items(), key=lambda kv: (kv[0][0], _ORDER.get(kv[0][1], len(_ORDER)),
                                                                     kv[0][1])):
        keep = n > 0
        lo, hi, how = _interval(n[keep], m[keep], rng)
        slices.setdefault(name, []).append({"value": v, "instances": int(n.sum()), "found": int(m.sum()),
                                            "recall": round(float(m.sum() / n.sum()), 4),
                                            "ci95": [round(lo, 4), round(hi, 4)], "interval": how,
                                            "images": int(keep.sum())})
    missed = [a for a in anns if a["id"] in found and not found[a["id"]]]
    examples = [{"id": a["id"], "image_id": a["image_id"], "file_name": gt.imgs[a["image_id"]].get("file_name"),
                 "mask_file": gt.imgs[a["image_id"]].get("mask_file"), "instance_id": a.get("instance_id"),
                 "category": gt.cats[a["category_id"]]["name"], "bbox": a["bbox"]}
                for k in sorted(rng.permutation(len(missed))[:MISSED_EXAMPLES].tolist()) for a in [missed[k]]]
    ranked = sorted(({"slice": name, **s} for name, rows in slices.items() for s in rows
                     if s["instances"] >= min_count), key=lambda s: (s["recall"], -s["instances"]))
    total = sum(found.values()), len(found)
    return {"annotations": os.path.abspath(annotations), "predictions": os.path.abspath(predictions),
            "images": len(images), "detections": len(dets), "iou": float(E.params.iouThrs[t]), "score": score,
            "coco": overall, "per_class": per_class,
            "recall": round(total[0] / total[1], 4) if total[1] else None, "instances": total[1],
            "min_count": min_count, "worst": ranked[:10], "slices": slices, "missed_examples": examples}


def write(result: dict, out_dir: str, image_root: Optional[str] = None) -> str:
    """eval.json and index.html (self-contained) in ``out_dir``; ``image_root``: the folder of
    the images (and masks), for the sheet of missed objects. Returns eval.json's path."""
    from .io import atomic_write_bytes, atomic_write_json

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, EVAL_FILE)
    atomic_write_json(path, result, indent=1)
    atomic_write_bytes(os.path.join(out_dir, "index.html"), page(result, image_root).encode("utf-8"))
    return path


def _slice_figure(rows: List[dict], title: str) -> str:
    """Base64 PNG: recall per value with its 95% interval and object count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _png

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        fig, ax = plt.subplots(figsize=(max(3.0, 0.55 * len(rows) + 1.5), 2.6))
        r = np.array([x["recall"] for x in rows])
        lo, hi = np.array([x["ci95"][0] for x in rows]), np.array([x["ci95"][1] for x in rows])
        ax.bar(range(len(rows)), r, color="#4a78b5", yerr=[r - lo, hi - r], capsize=3)
        ax.set_xticks(range(len(rows)), [f"{x['value']}\n({x['instances']})" for x in rows], fontsize=7,
                      rotation=30 if len(rows) > 6 else 0)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("recall")
        ax.set_title(title, fontsize=9)
        return _png(fig)


def _missed_sheet(examples: List[dict], root: str) -> Optional[str]:
    """Base64 PNG of crops around missed objects, their masks outlined (boxes without masks)."""
    import cv2

    from .draw import grid
    from .io import read_png

    tiles = []
    for e in examples:
        try:
            rgb = read_png(os.path.join(root, "images", e["file_name"]) if os.path.isdir(os.path.join(root, "images"))
                           else os.path.join(root, e["file_name"]))
        except (OSError, TypeError):
            continue
        out = np.ascontiguousarray(rgb[..., ::-1]).copy()
        x, y, w, h = (int(round(v)) for v in e["bbox"])
        if e.get("mask_file") and e.get("instance_id") is not None:
            try:
                mask = (read_png(os.path.join(root, e["mask_file"])) == e["instance_id"]).astype(np.uint8)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(out, contours, -1, (0, 0, 255), 1, cv2.LINE_AA)
            except OSError:
                pass
        else:
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (0, 0, 255), 1)
        pad = max(w, h) // 2 + 8
        H, W = out.shape[:2]
        crop = out[max(0, y - pad):min(H, y + h + pad), max(0, x - pad):min(W, x + w + pad)]
        tile = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, e["category"], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.ascontiguousarray(tile[..., ::-1]))
    if not tiles:
        return None
    ok, buf = cv2.imencode(".png", grid(tiles, 8, tile=(128, 128))[..., ::-1])
    import base64

    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


def page(result: dict, image_root: Optional[str] = None) -> str:
    """index.html: the COCO figures, the worst slices first, a plot per slice, missed objects."""
    import html

    c = result["coco"]
    esc = html.escape
    parts = [f"<h1>simgen evaluate</h1><p>{esc(result['predictions'])} against {esc(result['annotations'])}: "
             f"{result['images']} images, {result['instances']} objects, {result['detections']} detections.</p>",
             f"<p>COCO bbox mAP <b>{c['map']:.3f}</b>, mAP50 <b>{c['map50']:.3f}</b>, mAP75 {c['map75']:.3f}; "
             f"recall at IoU {result['iou']:.2f} (detections scoring at least {result['score']}): "
             f"<b>{result['recall']}</b>.</p>",
             f"<h2>Worst slices</h2><p>At least {result['min_count']} objects; 95% intervals over images.</p>"
             "<table><tr><th>slice</th><th>value</th><th>recall</th><th>95% interval</th><th>objects</th>"
             "<th>images</th></tr>"]
    for s in result["worst"]:
        parts.append(f"<tr><td>{esc(s['slice'])}</td><td>{esc(str(s['value']))}</td><td>{s['recall']:.3f}</td>"
                     f"<td>{s['ci95'][0]:.3f} - {s['ci95'][1]:.3f}</td><td>{s['instances']}</td>"
                     f"<td>{s['images']}</td></tr>")
    parts.append("</table><h2>Per class</h2><table><tr><th>class</th><th>AP</th><th>AP50</th><th>objects</th></tr>")
    key = f"ap{int(round(result['iou'] * 100))}"

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    for name, v in result["per_class"].items():
        parts.append(f"<tr><td>{esc(name)}</td><td>{fmt(v['ap'])}</td><td>{fmt(v.get(key))}</td>"
                     f"<td>{v['instances']}</td></tr>")
    parts.append("</table><h2>Slices</h2>")
    for name, rows in result["slices"].items():
        parts.append(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{_slice_figure(rows, name)}'>"
                     f"</figure>")
    sheet = _missed_sheet(result.get("missed_examples", []), image_root) if image_root else None
    if sheet:
        parts.append(f"<h2>Missed objects</h2><p>A random {len(result['missed_examples'])} of them, outlined.</p>"
                     f"<img alt='missed objects' src='data:image/png;base64,{sheet}'>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>simgen evaluate</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;text-align:left}"
            "figure{display:inline-block;margin:6px}</style></head><body>" + "".join(parts) + "</body></html>")


def summary(result: dict) -> str:
    """A few lines for the terminal: the COCO figures and the worst slices."""
    c = result["coco"]
    lines = [f"COCO bbox mAP {c['map']:.3f}, mAP50 {c['map50']:.3f}, mAP75 {c['map75']:.3f} "
             f"({result['images']} images, {result['instances']} objects, {result['detections']} detections); "
             f"recall at IoU {result['iou']:.2f} {result['recall']}",
             f"worst slices (at least {result['min_count']} objects; recall, 95% interval):"]
    for s in result["worst"][:8]:
        lines.append(f"  {s['slice']}={s['value']}: {s['recall']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] "
                     f"of {s['instances']}")
    return "\n".join(lines)
