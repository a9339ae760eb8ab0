"""Labels from rendered buffers (pure numpy + pycocotools): tight boxes of visible masks,
COCO RLE, areas, visibility and 6D poses."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .spec import Annotation, Frame, SceneSpec


def mask_to_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """Tight box [x, y, w, h] of a non-empty (H,W) bool mask; w = x_max - x_min + 1."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def encode_rle(mask: np.ndarray) -> dict:
    """(H,W) bool mask -> COCO RLE {'size': [H, W], 'counts': str} (JSON-ready)."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_util

    r = {"size": rle["size"], "counts": rle["counts"].encode("ascii") if isinstance(rle["counts"], str)
         else rle["counts"]}
    return mask_util.decode(r).astype(bool)


def annotate(scene: SceneSpec, frame: Frame, min_visible_pixels: int = 1) -> List[Annotation]:
    """One Annotation per labeled object with at least ``min_visible_pixels`` visible pixels.

    visibility = visible pixels / pixels the object covers when rendered alone (both within
    the frame), in [0, 1].
    """
    w2c = np.linalg.inv(np.asarray(scene.camera.pose))
    inst = frame.instance
    counts = np.bincount(inst.ravel(), minlength=max((o.instance_id for o in scene.objects), default=0) + 1)
    # (distractors have negative ids and never appear in the instance map)
    out = []
    for o in scene.objects:
        if not o.labeled:
            continue
        area = int(counts[o.instance_id])
        if area < min_visible_pixels:
            continue
        mask = inst == o.instance_id
        alone = frame.unoccluded.get(o.instance_id)
        full = int(alone.sum()) if alone is not None else area
        full = max(full, area)  # the visible part is always inside the unoccluded mask
        out.append(Annotation(
            instance_id=o.instance_id, category=o.category, bbox=mask_to_bbox(mask), area=area,
            rle=encode_rle(mask), visibility=area / full, unoccluded_area=full,
            pose_m2w=np.asarray(o.pose), pose_m2c=w2c @ np.asarray(o.pose),
            scale=np.asarray(o.scale), asset=o.asset))
    return out
