"""COCO instances (the canonical format) with simgen's documented extensions.

Image entries add: ``K`` (3x3, OpenCV), ``cam_pose`` (4x4 camera-to-world, OpenCV axes,
metres), ``mask_file``, ``depth_file``, ``depth_scale``, ``settle``. Annotations add:
``instance_id`` (value in the mask PNG), ``visibility``, ``unoccluded_area``, ``truncation``,
``amodal_bbox``, ``amodal_segmentation``, ``difficulty``, ``ignore`` (with ``iscrowd`` = ignore,
so COCOeval skips filtered objects), ``asset``, ``scale`` and ``pose`` (``R_m2c``/``t_m2c``
model-to-camera, ``R_m2w``/``t_m2w`` model-to-world).
"""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from ..io import atomic_write_json

ANNOTATIONS_FILE = "annotations.json"


def _r(a, nd=6):
    return np.round(np.asarray(a, dtype=np.float64), nd).tolist()


def image_part(sample, files: Dict[str, str]) -> dict:
    """JSON-ready record of one image (category *names*; ids are assigned at finalize)."""
    cam = sample.scene.camera
    img = {
        "file_name": os.path.basename(files["image"]),
        "width": int(cam.width), "height": int(cam.height),
        "index": int(sample.index),
        "split": sample.split,
        "mask_file": files["mask"],
        "depth_file": files.get("depth"),
        "depth_scale": 0.001,
        "K": _r(cam.K), "cam_pose": _r(cam.pose),
        "settle": sample.settle.as_dict(),
        "conditions": sample.conditions or {},
    }
    img.update(sample.image_meta or {})
    anns = []
    for a in sample.annotations:
        anns.append({
            "instance_id": int(a.instance_id), "category": a.category,
            "bbox": [int(v) for v in a.bbox], "area": int(a.area),
            "segmentation": a.rle, "iscrowd": int(a.ignore), "ignore": int(a.ignore),
            "visibility": round(float(a.visibility), 6), "unoccluded_area": int(a.unoccluded_area),
            "truncation": round(float(a.truncation), 6), "difficulty": a.difficulty,
            "amodal_bbox": [int(v) for v in a.amodal_bbox], "amodal_segmentation": a.amodal_rle,
            "asset": a.asset, "scale": _r(a.scale),
            "pose": {"R_m2c": _r(a.pose_m2c[:3, :3]), "t_m2c": _r(a.pose_m2c[:3, 3]),
                     "R_m2w": _r(a.pose_m2w[:3, :3]), "t_m2w": _r(a.pose_m2w[:3, 3])},
        })
    return {"image": img, "annotations": anns}


def rle_to_polygons(rle: dict) -> List[List[float]]:
    """COCO polygons (one flat [x1, y1, ...] per part, through the centres of its boundary
    pixels) of an RLE mask. Holes are not represented: polygons are outer boundaries."""
    import cv2

    from ..annotate import decode_rle

    m = decode_rle(rle).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + 0.5
        if len(pts) < 3:  # a 1-2 pixel sliver: outline the pixel squares instead
            x0, y0 = pts.min(axis=0) - 0.5
            x1, y1 = pts.max(axis=0) + 0.5
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polys.append([round(float(v), 2) for v in pts.ravel()])
    return polys


def assemble(parts: List[dict], categories: List[str], info: dict, polygons: bool = False) -> dict:
    """The COCO document from per-image parts, sorted by image index; with ``polygons`` the
    visible masks are written as polygons instead of RLE."""
    cat_ids = {c: i + 1 for i, c in enumerate(categories)}
    images, annotations = [], []
    for part in sorted(parts, key=lambda p: p["image"]["index"]):
        img = dict(part["image"])
        img["id"] = img["index"] + 1
        images.append(img)
        for a in part["annotations"]:
            a = dict(a)
            a["id"] = len(annotations) + 1
            a["image_id"] = img["id"]
            a["category_id"] = cat_ids[a.pop("category")]
            if polygons:
                a["segmentation"] = rle_to_polygons(a["segmentation"])
            annotations.append(a)
    doc = {
        "info": info,
        "licenses": [],
        "categories": [{"id": i, "name": c, "supercategory": "object"} for c, i in cat_ids.items()],
        "images": images,
        "annotations": annotations,
    }
    return doc


def finalize(output_dir: str, parts: List[dict], categories: List[str], info: dict,
             polygons: bool = False) -> dict:
    """Write annotations.json atomically (last), plus annotations_<split>.json when the
    images fall in more than one split. Returns the document."""
    doc = assemble(parts, categories, info, polygons)
    images, annotations = doc["images"], doc["annotations"]
    splits = sorted({img.get("split", "train") for img in images})
    for name in ("train", "val", "test"):
        path = os.path.join(output_dir, f"annotations_{name}.json")
        if len(splits) > 1 and name in splits:
            keep = {img["id"] for img in images if img.get("split", "train") == name}
            sub = dict(doc, images=[i for i in images if i["id"] in keep],
                       annotations=[a for a in annotations if a["image_id"] in keep])
            atomic_write_json(path, sub)
        elif os.path.exists(path):
            os.unlink(path)
    atomic_write_json(os.path.join(output_dir, ANNOTATIONS_FILE), doc)  # last: marks completion
    return doc
