"""Labels from rendered buffers (pure numpy + pycocotools): tight boxes of visible masks,
COCO RLE, areas, visibility and 6D poses."""
from __future__ import annotations

from typing import List, Mapping, Optional, Tuple

import numpy as np

from .spec import Annotation, Frame, SceneSpec


def mask_to_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """Tight box [x, y, w, h] of a non-empty (H,W) bool mask; w = x_max - x_min + 1."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def encode_rle(mask: np.ndarray, cols: Optional[Tuple[int, int]] = None) -> dict:
    """(H,W) bool mask -> COCO RLE {'size': [H, W], 'counts': str} (JSON-ready).
    A Fortran-ordered bool mask is encoded in place (no copies).

    ``cols`` = (c0, c1): the mask is empty outside columns [c0, c1). The runs are then found
    in that band only (COCO counts run down the columns, so the columns left and right of it
    are one run of H * c0 and H * (W - c1) zeros) and pycocotools compresses them: the same
    string, at a fraction of the cost of scanning the frame (an object spans ~1/8 of it)."""
    from pycocotools import mask as mask_util

    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    h, w = m.shape
    if cols is None:
        rle = mask_util.encode(np.asfortranarray(m))
    else:
        c0, c1 = max(int(cols[0]), 0), min(int(cols[1]), w)
        band = np.asfortranarray(m[:, c0:c1]).ravel(order="F")  # a view when m is Fortran-ordered
        if band.size == 0:
            counts = [h * w]
        else:
            edges = np.flatnonzero(band[1:] != band[:-1]) + 1
            runs = np.diff(np.concatenate(([0], edges, [band.size]))).tolist()
            if band[0]:
                runs.insert(0, 0)
            runs[0] += h * c0
            if band[-1]:
                if c1 < w:
                    runs.append(h * (w - c1))
            else:
                runs[-1] += h * (w - c1)
            counts = runs
        rle = mask_util.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_util

    r = {"size": rle["size"], "counts": rle["counts"].encode("ascii") if isinstance(rle["counts"], str)
         else rle["counts"]}
    return mask_util.decode(r).astype(bool)


def _visible_mask(inst: np.ndarray, iid: int, area: int, amodal) -> np.ndarray:
    """(H,W) bool mask of ``inst == iid``, Fortran-ordered (see encode_rle). The visible part
    lies inside the unoccluded silhouette, so only its box (``amodal`` = (crop, x0, y0)) is
    compared; the whole frame when there is none or the box misses pixels (``area`` is the
    id's pixel count)."""
    h, w = inst.shape
    mask = np.zeros((w, h), dtype=bool).T
    if amodal is not None:
        crop, x0, y0 = amodal
        c0, r0 = max(int(x0), 0), max(int(y0), 0)
        c1, r1 = min(int(x0) + crop.shape[1], w), min(int(y0) + crop.shape[0], h)
        if c0 < c1 and r0 < r1:
            np.equal(inst[r0:r1, c0:c1], iid, out=mask[r0:r1, c0:c1])
            if np.count_nonzero(mask[r0:r1, c0:c1]) == area:
                return mask
    np.equal(inst, iid, out=mask)
    return mask


def difficulty(height: int, visibility: float, truncation: float, levels) -> str:
    """KITTI-style level: the first of easy, moderate, hard whose thresholds the object meets."""
    for name in ("easy", "moderate", "hard"):
        lv = levels[name]
        if height >= lv.min_height and visibility >= lv.min_visibility and truncation <= lv.max_truncation:
            return name
    return "beyond_hard"


def annotate(scene: SceneSpec, frame: Frame, cfg=None, bounds: Optional[Mapping[str, np.ndarray]] = None,
             dist: Optional[np.ndarray] = None, keypoints: Optional[Mapping[str, object]] = None) -> List[Annotation]:
    """One Annotation per labeled object with at least ``cfg.min_visible_pixels`` visible
    pixels (``cfg``: the annotate config; defaults when None). ``cfg.labels`` names the
    optional label kinds (simgen.labels) computed into each annotation's ``extra``; ``bounds``
    (asset -> (2,3) model-frame bounding box, metres), ``keypoints`` (asset -> its keypoints,
    labels.View) and ``dist`` (the image's lens distortion coefficients, if any) are what they
    may need besides the buffers.

    visibility = visible pixels / pixels the object covers when rendered alone, both within
    the frame; truncation = 1 - (rendered-alone pixels within the frame / rendered-alone
    pixels on the enlarged canvas). Objects below the filters get ignore=True, or are left
    out when ``cfg.filtered == 'drop'``.
    """
    if cfg is None:
        from omegaconf import OmegaConf

        from .config import AnnotateConfig

        cfg = OmegaConf.structured(AnnotateConfig)
    w2c = np.linalg.inv(np.asarray(scene.camera.pose))
    kinds = tuple(cfg.get("labels", ()) or ())
    view = None
    if kinds:
        from . import labels

        view = labels.View(scene, frame, w2c, bounds or {}, None if dist is None else np.asarray(dist, np.float64),
                           keypoints or {})
    inst = frame.instance
    counts = np.bincount(inst.ravel(), minlength=max((o.instance_id for o in scene.objects), default=0) + 1)
    # (distractors have negative ids and never appear in the instance map)
    out = []
    for o in scene.objects:
        if not o.labeled:
            continue
        area = int(counts[o.instance_id])
        if area < cfg.min_visible_pixels:
            continue
        alone = frame.unoccluded.get(o.instance_id)
        mask = _visible_mask(inst, o.instance_id, area, frame.amodal.get(o.instance_id))
        if alone is None:
            alone = mask
        full = max(int(np.count_nonzero(alone)), area)  # the visible part is always inside the unoccluded mask
        crop, x0, y0 = frame.amodal.get(o.instance_id, (alone, 0, 0))
        total = max(int(np.count_nonzero(crop)), full)
        bbox = mask_to_bbox(mask)
        amodal_bbox = (int(x0), int(y0), int(crop.shape[1]), int(crop.shape[0])) if crop.size else bbox
        vis = area / full
        trunc = frame.truncation.get(o.instance_id, 1.0 - full / total)
        ignore = (vis < cfg.min_visibility or area < cfg.min_area or min(bbox[2], bbox[3]) < cfg.min_box_side)
        if ignore and cfg.filtered == "drop":
            continue
        extra = {}
        if view is not None:
            h, w = inst.shape
            region = ((max(int(y0), 0), min(int(y0) + crop.shape[0], h), max(int(x0), 0),
                       min(int(x0) + crop.shape[1], w)) if crop.size else (0, h, 0, w))
            extra = labels.compute(kinds, view, labels.Target(o, mask, bbox, alone, region))
        out.append(Annotation(
            instance_id=o.instance_id, category=o.category, bbox=bbox, area=area,
            rle=encode_rle(mask, (bbox[0], bbox[0] + bbox[2])), visibility=vis, unoccluded_area=full,
            pose_m2w=np.asarray(o.pose), pose_m2c=w2c @ np.asarray(o.pose),
            scale=np.asarray(o.scale), asset=o.asset, truncation=trunc, amodal_bbox=amodal_bbox,
            amodal_rle=encode_rle(alone, (x0, x0 + crop.shape[1]) if crop.size else None),
            difficulty=difficulty(bbox[3], vis, trunc, cfg.difficulty), ignore=bool(ignore), extra=extra))
    return out
