"""`simgen validate <dataset>`: check a dataset on disk and list every problem found."""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import List

import numpy as np


def validate_dataset(path: str, max_problems: int = 200) -> List[str]:
    """Problems found in the dataset at ``path`` (empty when it is sound)."""
    from pycocotools import mask as mask_util

    from .io import read_png

    problems: List[str] = []

    def bad(msg: str) -> None:
        if len(problems) < max_problems:
            problems.append(msg)

    ann_path = os.path.join(path, "annotations.json")
    if not os.path.isfile(ann_path):
        return [f"{ann_path} is missing (the run did not finish, or this is not a simgen dataset)"]
    try:
        coco = json.load(open(ann_path, encoding="utf-8"))
        images, anns, cats = coco["images"], coco["annotations"], coco["categories"]
    except (ValueError, KeyError) as exc:
        return [f"{ann_path} is not a COCO instances file ({type(exc).__name__}: {exc})"]
    for what, ids in (("image", [i["id"] for i in images]), ("annotation", [a["id"] for a in anns]),
                      ("category", [c["id"] for c in cats])):
        dup = [k for k, n in Counter(ids).items() if n > 1]
        if dup:
            bad(f"duplicate {what} ids: {dup[:5]}")
    cat_ids = {c["id"] for c in cats}
    by_image = {i["id"]: [] for i in images}
    for a in anns:
        if a["image_id"] not in by_image:
            bad(f"annotation {a['id']}: unknown image_id {a['image_id']}")
            continue
        by_image[a["image_id"]].append(a)
        if a["category_id"] not in cat_ids:
            bad(f"annotation {a['id']}: unknown category_id {a['category_id']}")
    for img in images:
        W, H = img["width"], img["height"]
        name = img["file_name"]
        try:
            rgb = read_png(os.path.join(path, "images", name))
            if rgb.shape[:2] != (H, W):
                bad(f"images/{name}: size {rgb.shape[1]}x{rgb.shape[0]}, expected {W}x{H}")
        except OSError:
            bad(f"images/{name}: missing or unreadable")
        try:
            inst = read_png(os.path.join(path, img["mask_file"])).astype(np.int64)
        except (OSError, KeyError):
            bad(f"{img.get('mask_file', 'mask of ' + name)}: missing or unreadable")
            continue
        if inst.shape != (H, W):
            bad(f"{img['mask_file']}: size {inst.shape[1]}x{inst.shape[0]}, expected {W}x{H}")
            continue
        if img.get("depth_file"):
            try:
                if read_png(os.path.join(path, img["depth_file"])).shape != (H, W):
                    bad(f"{img['depth_file']}: wrong size")
            except OSError:
                bad(f"{img['depth_file']}: missing or unreadable")
        ids = [a["instance_id"] for a in by_image[img["id"]]]
        if len(set(ids)) != len(ids):
            bad(f"image {name}: instance ids repeat")
        extra = set(np.unique(inst).tolist()) - {0} - set(ids)
        if extra:
            bad(f"{img['mask_file']}: ids {sorted(extra)[:5]} have no annotation")
        for a in by_image[img["id"]]:
            x, y, w, h = a["bbox"]
            where = f"annotation {a['id']} ({name}, instance {a['instance_id']})"
            if w < 1 or h < 1 or x < 0 or y < 0 or x + w > W or y + h > H:
                bad(f"{where}: bbox {a['bbox']} is outside the {W}x{H} image")
                continue
            truth = inst == a["instance_id"]
            if isinstance(a["segmentation"], list):  # polygons (coco.polygons=true): approximate
                try:
                    m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], H, W))).astype(bool)
                except Exception as exc:
                    bad(f"{where}: polygons do not decode ({type(exc).__name__})")
                    continue
                from scipy.ndimage import binary_fill_holes

                filled = binary_fill_holes(truth)  # polygons are outer boundaries: no holes
                iou = (m & filled).sum() / max((m | filled).sum(), 1)
                if iou < (0.5 if truth.sum() < 100 else 0.8):
                    bad(f"{where}: polygons cover the mask PNG region poorly (IoU {iou:.2f})")
                m = truth
            else:
                try:
                    seg = dict(a["segmentation"])
                    if isinstance(seg["counts"], str):
                        seg["counts"] = seg["counts"].encode("ascii")
                    m = mask_util.decode(seg).astype(bool)
                except Exception as exc:  # pycocotools raises several types
                    bad(f"{where}: segmentation does not decode ({type(exc).__name__})")
                    continue
                if m.shape != (H, W):
                    bad(f"{where}: segmentation size {m.shape}, expected {(H, W)}")
                    continue
                if not (m == truth).all():
                    bad(f"{where}: segmentation differs from the mask PNG")
            ys, xs = np.nonzero(m)
            if len(xs) and [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                            int(ys.max() - ys.min() + 1)] != [x, y, w, h]:
                bad(f"{where}: bbox {a['bbox']} is not the tight box of its mask")
            if a.get("area") != int(m.sum()):
                bad(f"{where}: area {a.get('area')} but the mask has {int(m.sum())} pixels")
    _check_exports(path, images, len(cats), bad)
    return problems


def _check_exports(path: str, images, n_classes: int, bad) -> None:
    per_split = Counter(i.get("split", "train") for i in images)
    yolo = os.path.join(path, "yolo")
    if os.path.isdir(yolo):
        for split, n in per_split.items():
            d = os.path.join(yolo, "labels", split)
            files = sorted(os.listdir(d)) if os.path.isdir(d) else []
            if len(files) != n:
                bad(f"yolo/labels/{split}: {len(files)} label files, COCO has {n} {split} images")
            imgs = os.path.join(yolo, "images", split)
            if (len(os.listdir(imgs)) if os.path.isdir(imgs) else 0) != n:
                bad(f"yolo/images/{split}: image count differs from COCO's {n}")
            for f in files:
                for k, line in enumerate(open(os.path.join(d, f)).read().split("\n")):
                    if not line.strip():
                        continue
                    v = line.split()
                    nums = np.array(v[1:], float) if len(v) > 1 else np.zeros(0)
                    if (not v[0].isdigit() or int(v[0]) >= n_classes or len(nums) < 4
                            or (len(nums) > 4 and len(nums) % 2) or (nums < 0).any() or (nums > 1).any()):
                        bad(f"yolo/labels/{split}/{f} line {k + 1}: malformed '{line[:60]}'")
                        break
    voc = os.path.join(path, "voc")
    if os.path.isdir(voc):
        n_xml = len(os.listdir(os.path.join(voc, "Annotations"))) if os.path.isdir(os.path.join(voc, "Annotations")) else 0
        if n_xml != len(images):
            bad(f"voc/Annotations: {n_xml} files for {len(images)} images")
        for split, n in per_split.items():
            f = os.path.join(voc, "ImageSets", "Main", f"{split}.txt")
            got = len(open(f).read().split()) if os.path.isfile(f) else 0
            if got != n:
                bad(f"voc/ImageSets/Main/{split}.txt lists {got} images, COCO has {n}")
