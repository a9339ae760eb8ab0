"""`simgen validate <dataset>`: check a dataset on disk and list every problem found."""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import List, Sequence

import numpy as np

CHUNK = 32  # images per task when checking in several processes


def validate_dataset(path: str, max_problems: int = 200, processes: int = 1) -> List[str]:
    """Problems found in the dataset at ``path`` (empty when it is sound), in image order.

    ``annotations.json`` is read as a stream (memory does not grow with the dataset; a file
    another tool reordered is loaded whole instead), and with ``processes`` > 1 the images
    are checked (PNGs decoded, every RLE compared with the mask) in that many processes."""
    from .writers.coco import ANNOTATIONS_FILE, missing_annotations

    ann_path = os.path.join(path, ANNOTATIONS_FILE)
    if not os.path.isfile(ann_path):
        return [missing_annotations(ann_path)]
    stale = stale_outputs(path)
    return stale + _validate_coco(path, max_problems - len(stale), processes)


def warnings(path: str) -> List[str]:
    """What is sound but likely a mistake, from the dataset's saved config: distractor
    assets that are also labeled classes (even where distractors.share_class_shapes asked for it)."""
    from omegaconf import OmegaConf

    from .assets import AssetLibrary
    from .dataset import CONFIG_FILE
    from .errors import SimGenError

    try:
        cfg = OmegaConf.load(os.path.join(path, CONFIG_FILE))
        count = cfg.distractors.count
        if isinstance(count, (int, float)) and count == 0:
            return []
        asked = bool(cfg.distractors.get("share_class_shapes", False))
        shared = AssetLibrary.from_config(cfg).shared_shapes(AssetLibrary.from_config(cfg, "distractors"))
    except (OSError, ValueError, KeyError, AttributeError, SimGenError):
        return []  # no saved config (another tool's dataset), or its assets are not here
    how = "asked for with distractors.share_class_shapes=true" if asked else "fix: distractors.asset_sets=[clutter]"
    return [f"distractor asset(s) {', '.join(shared[:6])} are also labeled classes: unlabeled instances of "
            f"a class teach a detector to miss it ({how})"] if shared else []


def stale_outputs(path: str) -> List[str]:
    """Outputs simgen wrote into ``path`` for an earlier run of another config (older than
    the run record the folder's images belong to): an export folder or report that no longer
    describes the dataset."""
    from .dataset import IMAGE_DIRS, OUTPUTS, RUN_FILE, owned, work_path

    try:
        since = os.stat(work_path(path, RUN_FILE)).st_mtime
    except OSError:
        return []
    out = []
    for name in owned(path):
        full = os.path.join(path, name)
        if name in OUTPUTS and name not in IMAGE_DIRS and os.path.isdir(full) and os.stat(full).st_mtime < since:
            out.append(f"{name}/ is older than this dataset's run record: written for another config "
                       f"(fix: delete it, or run the command that writes it again)")
    return out


def _validate_coco(path: str, max_problems: int, processes: int) -> List[str]:
    from .writers.coco import ANNOTATIONS_FILE, Coco, OutOfOrder, by_image
    from .writers.coco import not_coco as not_coco_error

    ann_path = os.path.join(path, ANNOTATIONS_FILE)

    def not_coco(exc):
        return [str(not_coco_error(ann_path, exc, "point simgen validate at a dataset folder that simgen wrote"))]

    try:
        try:
            return _validate(path, Coco.from_file(ann_path), max_problems, processes)
        except OutOfOrder:
            pass
        doc = json.load(open(ann_path, encoding="utf-8"))
        images, anns, cats = doc["images"], doc["annotations"], doc["categories"]
    except (ValueError, KeyError) as exc:
        return not_coco(exc)
    problems: List[str] = []

    def unknown(a):  # the cross-reference a stream cannot check: any order, any image_id
        if len(problems) < max_problems:
            problems.append(f"annotation {a['id']}: unknown image_id {a['image_id']}")

    grouped = by_image(images, anns, unknown)
    ds = Coco(doc.get("info", {}), cats, lambda: ((img, grouped[img["id"]]) for img in images))
    try:
        return problems + _validate(path, ds, max_problems - len(problems), processes)
    except (ValueError, KeyError) as exc:
        return not_coco(exc)


class _Seen:
    """Which integer ids were met: a byte per id up to 10 million, a set beyond."""

    def __init__(self):
        self._flags, self._set = bytearray(), set()

    def add(self, i) -> bool:
        """Record ``i``; False when it was met before."""
        if isinstance(i, int) and 0 <= i < 10_000_000:
            if i >= len(self._flags):
                self._flags.extend(bytes(max(i + 1 - len(self._flags), len(self._flags))))
            if self._flags[i]:
                return False
            self._flags[i] = 1
            return True
        if i in self._set:
            return False
        self._set.add(i)
        return True


def _validate(path: str, ds, max_problems: int, processes: int) -> List[str]:
    problems: List[str] = []

    def bad(msg: str) -> None:
        if len(problems) < max_problems:
            problems.append(msg)

    cats = ds.categories
    cat_ids = {c["id"] for c in cats}
    dup = [k for k, n in Counter(c["id"] for c in cats).items() if n > 1]
    if dup:
        bad(f"duplicate category ids: {dup[:5]}")
    seen = {"image": _Seen(), "annotation": _Seen()}
    dups = {"image": [], "annotation": []}
    per_split: Counter = Counter()
    with_normals = [0]

    def records():
        for img, anns in ds:
            per_split[img.get("split", "train")] += 1
            with_normals[0] += bool(img.get("normals_file"))
            if not seen["image"].add(img["id"]):
                dups["image"].append(img["id"])
            for a in anns:
                if not seen["annotation"].add(a["id"]):
                    dups["annotation"].append(a["id"])
                if a["category_id"] not in cat_ids:
                    bad(f"annotation {a['id']}: unknown category_id {a['category_id']}")
            yield img, anns

    config = _config(path)
    for found in _checked(path, records(), processes, _drops_filtered(config)):
        for msg in found:
            bad(msg)
    problems[:0] = [f"duplicate {what} ids: {ids[:5]}" for what, ids in dups.items() if ids]
    _check_exports(path, per_split, len(cats), bad, with_normals[0], _configured_formats(config))
    return problems[:max_problems]


def _config(path: str) -> dict:
    """The dataset's config.yaml as a mapping ({} when it has none or it does not parse)."""
    import yaml

    try:
        with open(os.path.join(path, "config.yaml"), encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}


def _configured_formats(config: dict) -> List[str]:
    """The formats a dataset's config (:func:`_config`) asks for."""
    fmts = config.get("formats") or []
    return [str(f) for f in fmts] if isinstance(fmts, list) else []


def _drops_filtered(config: dict) -> bool:
    """True when the dataset was made with annotate.filtered=drop (its config.yaml says so):
    objects below the filters are then in the mask PNG without an annotation, by design."""
    annotate = config.get("annotate")
    return isinstance(annotate, dict) and annotate.get("filtered") == "drop"


def _checked(path: str, records, processes: int, drop_ok: bool = False):
    """Each image's problems (a list), in order: the first ``CHUNK`` images checked here,
    the rest, if any, in ``processes`` spawned processes."""
    from .parallel import chunked, ordered_map

    for done in ordered_map(_check_chunk, chunked(records, CHUNK), processes, path, drop_ok, local_first=True,
                            what="checking images"):
        yield from done


def _check_chunk(chunk, path: str, drop_ok: bool = False) -> List[List[str]]:
    return [_check_image(path, img, anns, drop_ok) for img, anns in chunk]


def _check_image(path: str, img: dict, anns: list, drop_ok: bool = False) -> List[str]:
    """One image's problems: its files (present, readable, the right size), its instance ids
    against the mask PNG, and each annotation's box, RLE (or polygons) and area against it."""
    from pycocotools import mask as mask_util

    from .io import read_png

    problems: List[str] = []
    bad = problems.append
    W, H = img["width"], img["height"]
    name = img["file_name"]
    try:
        rgb = read_png(os.path.join(path, "images", name))
        if rgb.shape[:2] != (H, W):
            bad(f"images/{name}: size {rgb.shape[1]}x{rgb.shape[0]}, expected {W}x{H}")
    except OSError:
        bad(f"images/{name}: missing or unreadable")
    try:
        inst = read_png(os.path.join(path, img["mask_file"]))
    except (OSError, KeyError):
        bad(f"{img.get('mask_file', 'mask of ' + name)}: missing or unreadable")
        return problems
    if inst.shape != (H, W) or inst.dtype.kind != "u":
        bad(f"{img['mask_file']}: size {inst.shape[1]}x{inst.shape[0]}, expected {W}x{H}")
        return problems
    if img.get("depth_file"):
        try:
            if read_png(os.path.join(path, img["depth_file"])).shape != (H, W):
                bad(f"{img['depth_file']}: wrong size")
        except OSError:
            bad(f"{img['depth_file']}: missing or unreadable")
    if img.get("normals_file"):
        try:
            nrm = read_png(os.path.join(path, img["normals_file"]))
            if nrm.shape != (H, W, 3):
                bad(f"{img['normals_file']}: wrong size")
            elif not nrm[inst > 0].any(axis=-1).all():
                bad(f"{img['normals_file']}: object pixels without a normal")
            else:
                drawn = nrm[nrm.any(axis=-1)].astype(np.float32) / 127.5 - 1.0
                if len(drawn) and np.abs(np.linalg.norm(drawn, axis=1) - 1.0).max() > 0.02:
                    bad(f"{img['normals_file']}: holds values that are not unit normals")
        except OSError:
            bad(f"{img['normals_file']}: missing or unreadable")
    sem_path = os.path.join(path, "semantic", os.path.splitext(name)[0] + ".png")
    if os.path.isdir(os.path.join(path, "semantic")):
        try:
            sem = read_png(sem_path)
        except OSError:
            bad(f"semantic/{os.path.basename(sem_path)}: missing or unreadable")
        else:
            from .writers.semantic import semantic_map

            if (sem.shape != (H, W) or sem.dtype.kind != "u"
                    or not (sem == semantic_map(inst, anns, np.int64, np.iinfo(sem.dtype).max)).all()):
                bad(f"semantic/{os.path.basename(sem_path)}: differs from the mask PNG mapped through the annotations' "
                    f"categories (fix: simgen export {path} --to semantic)")
    pixels = np.bincount(inst.ravel())  # pixels of each id in the mask PNG
    ids = [a["instance_id"] for a in anns]
    if len(set(ids)) != len(ids):
        bad(f"image {name}: instance ids repeat")
    extra = set(np.flatnonzero(pixels).tolist()) - {0} - set(ids)
    if extra and not drop_ok:  # (annotate.filtered=drop leaves them out on purpose)
        bad(f"{img['mask_file']}: ids {sorted(extra)[:5]} have no annotation")
    for a in anns:
        x, y, w, h = a["bbox"]
        where = f"annotation {a['id']} ({name}, instance {a['instance_id']})"
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > W or y + h > H:
            bad(f"{where}: bbox {a['bbox']} is outside the {W}x{H} image")
            continue
        iid = a["instance_id"]
        if isinstance(a["segmentation"], list):  # polygons (coco.polygons=true): approximate
            truth = inst == iid
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
            box, area = _tight_box(truth), int(truth.sum())
        else:
            try:
                seg = dict(a["segmentation"])
                if isinstance(seg["counts"], str):
                    seg["counts"] = seg["counts"].encode("ascii")
                if list(seg["size"]) != [H, W]:
                    bad(f"{where}: segmentation size {tuple(seg['size'])}, expected {(H, W)}")
                    continue
                m = mask_util.decode(seg)
                # box and area straight from the runs; both describe the whole frame
                area = int(mask_util.area(seg))
                box = [int(v) for v in mask_util.toBbox(seg)] if area else None
            except Exception as exc:  # pycocotools raises several types
                bad(f"{where}: segmentation does not decode ({type(exc).__name__})")
                continue
            # The RLE equals the mask PNG's region: inside the box pixel for pixel, and neither
            # has pixels outside it (counts of the whole frame against counts of the box).
            crop = (slice(y, y + h), slice(x, x + w))
            truth = inst[crop] == iid
            inside = pixels[iid] if iid < len(pixels) else 0
            same = (area == int(np.count_nonzero(m[crop])) and inside == int(np.count_nonzero(truth))
                    and (m[crop].astype(bool) == truth).all())
            if not same:
                bad(f"{where}: segmentation differs from the mask PNG")
        if box is not None and box != [x, y, w, h]:
            bad(f"{where}: bbox {a['bbox']} is not the tight box of its mask")
        if a.get("area") != area:
            bad(f"{where}: area {a.get('area')} but the mask has {area} pixels")
    return problems


def _tight_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _yolo_keypoints(data_yaml: str) -> int:
    """Keypoints per label line of a YOLO pose dataset (data.yaml's kpt_shape), 0 otherwise."""
    import yaml

    try:
        with open(data_yaml, encoding="utf-8") as f:
            shape = (yaml.safe_load(f) or {}).get("kpt_shape")
        return int(shape[0]) if shape else 0
    except (OSError, ValueError, TypeError, IndexError, AttributeError, yaml.YAMLError):
        return 0


def _yolo_line_ok(v: List[str], n_classes: int, nkpt: int) -> bool:
    """One YOLO label line: a class index, then a box (4 numbers), a polygon (an even number,
    >= 6) or an oriented box (8), or with keypoints a box and nkpt (x, y, v) triples; every
    coordinate in [0, 1], every visibility 0, 1 or 2."""
    if not v[0].isdigit() or int(v[0]) >= n_classes:
        return False
    try:
        nums = np.array(v[1:], float)
    except ValueError:
        return False
    if nkpt:
        if len(nums) != 4 + 3 * nkpt:
            return False
        kp = nums[4:].reshape(-1, 3)
        coords = np.concatenate([nums[:4], kp[:, :2].ravel()])
        return bool(np.isin(kp[:, 2], (0, 1, 2)).all() and (coords >= 0).all() and (coords <= 1).all())
    if len(nums) < 4 or (len(nums) > 4 and (len(nums) % 2 or len(nums) < 6)):
        return False
    return bool((nums >= 0).all() and (nums <= 1).all())


def _check_exports(path: str, per_split: Counter, n_classes: int, bad, with_normals: int = 0,
                   formats: Sequence[str] = ()) -> None:
    n_images = sum(per_split.values())
    for fmt in formats:
        from .writers import EXPORTERS

        if fmt in EXPORTERS and not os.path.isdir(os.path.join(path, EXPORTERS[fmt].folder)):
            bad(f"{EXPORTERS[fmt].folder}/ is missing, and the dataset's config.yaml lists the format {fmt} (fix: "
                f"simgen export {path} --to {fmt})")
    nrm = os.path.join(path, "normals")
    if os.path.isdir(nrm):
        n_png = sum(1 for f in os.listdir(nrm) if f.endswith(".png"))
        if n_png != with_normals:
            bad(f"normals/: {n_png} maps, annotations.json names {with_normals}")
    yolo = os.path.join(path, "yolo")
    if os.path.isdir(yolo):
        nkpt = _yolo_keypoints(os.path.join(yolo, "data.yaml"))
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
                    if line.strip() and not _yolo_line_ok(line.split(), n_classes, nkpt):
                        bad(f"yolo/labels/{split}/{f} line {k + 1}: malformed '{line[:60]}'")
                        break
    sem = os.path.join(path, "semantic")
    if os.path.isdir(sem):
        n_png = sum(1 for f in os.listdir(sem) if f.endswith(".png"))
        if n_png != sum(per_split.values()):
            bad(f"semantic/: {n_png} maps for {sum(per_split.values())} images")
        if not os.path.isfile(os.path.join(sem, "semantic_classes.json")):
            bad(f"semantic/semantic_classes.json is missing (fix: simgen export {path} --to semantic)")
    voc = os.path.join(path, "voc")
    if os.path.isdir(voc):
        n_xml = len(os.listdir(os.path.join(voc, "Annotations"))) if os.path.isdir(os.path.join(voc, "Annotations")) else 0
        if n_xml != n_images:
            bad(f"voc/Annotations: {n_xml} files for {n_images} images")
        for split, n in per_split.items():
            f = os.path.join(voc, "ImageSets", "Main", f"{split}.txt")
            got = len(open(f).read().split()) if os.path.isfile(f) else 0
            if got != n:
                bad(f"voc/ImageSets/Main/{split}.txt lists {got} images, COCO has {n}")
