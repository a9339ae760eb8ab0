"""COCO instances (the canonical format) with simgen's documented extensions.

Image entries add: ``K`` (3x3, OpenCV), ``cam_pose`` (4x4 camera-to-world, OpenCV axes,
metres), ``mask_file``, ``depth_file``, ``depth_scale``, ``settle``. Annotations add:
``instance_id`` (value in the mask PNG), ``visibility``, ``unoccluded_area``, ``truncation``,
``amodal_bbox``, ``amodal_segmentation``, ``difficulty``, ``ignore`` (with ``iscrowd`` = ignore,
so COCOeval skips filtered objects), ``asset``, ``scale`` and ``pose`` (``R_m2c``/``t_m2c``
model-to-camera, ``R_m2w``/``t_m2w`` model-to-world).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..io import AtomicFile

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


Encoded = Tuple[dict, List[dict], str, List[str], list]  # image, annotations, their JSON texts, export summaries


class Coco:
    """A COCO dataset read one image at a time: ``for image, annotations in ds`` yields each
    image record (with ``id``) and its annotations (with ``id``, ``image_id``,
    ``category_id``) in image-index order. Re-iterable; only one image's records are in
    memory at a time, so writing or exporting a million-image dataset needs no more memory
    than a small one. ``categories`` and ``info`` are the COCO sections."""

    def __init__(self, info: dict, categories: List[dict], images: Callable[[], Iterator[Tuple[dict, List[dict]]]],
                 encoded: Optional[Callable[[], Iterator[Encoded]]] = None):
        self.info = info
        self.categories = categories
        self._images = images
        self._encoded = encoded

    def __iter__(self) -> Iterator[Tuple[dict, List[dict]]]:
        return iter(self._images())

    def encoded(self, exporters: Sequence = ()) -> Iterator[Encoded]:
        """Each image and its annotations with their compact JSON texts, in index order, and
        what each of ``exporters`` (begun :class:`~.common.Exporter` s) made of the image: the
        list of their ``image`` summaries. Read by several processes
        (``from_parts(processes=N)``), the records beside the texts are summaries: the
        image's ``SUMMARY_KEYS`` and each annotation's ``id`` and ``category_id`` (all that
        writing and counting need; the texts are complete)."""
        if self._encoded is not None:
            return self._encoded(exporters)
        return ((img, anns, _dumps(img), [_dumps(a) for a in anns], [e.image(img, anns) for e in exporters])
                for img, anns in self)

    @classmethod
    def from_parts(cls, paths: Iterable[str], categories: List[str], info: dict,
                   polygons: bool = False, processes: int = 1) -> "Coco":
        """From per-image part files (``image_part`` records), given in image-index order;
        with ``polygons`` the visible masks become polygons instead of RLE. With
        ``processes`` > 1, :meth:`encoded` reads, converts and encodes the parts in that many
        processes, in chunks, a few chunks ahead of the writer (same bytes)."""
        cat_ids = {c: i + 1 for i, c in enumerate(categories)}

        def images():
            next_id = 1
            for path in paths:
                img, anns = _from_part(path, cat_ids, polygons)
                for a in anns:
                    a["id"] = next_id
                    next_id += 1
                yield img, anns

        def encoded(exporters):
            return _encoded_in_processes(paths, cat_ids, polygons, processes, exporters)

        return cls(info, [{"id": i, "name": c, "supercategory": "object"} for c, i in cat_ids.items()], images,
                   encoded if processes > 1 else None)

    @classmethod
    def from_doc(cls, doc: dict) -> "Coco":
        """From a loaded COCO document (e.g. an existing annotations.json)."""
        def images():
            by_image: Dict[int, List[dict]] = {img["id"]: [] for img in doc["images"]}
            for a in doc["annotations"]:
                by_image[a["image_id"]].append(a)
            for img in sorted(doc["images"], key=lambda i: i.get("index", i["id"])):  # index order
                yield img, by_image[img["id"]]

        return cls(doc.get("info", {}), doc["categories"], images)


def _from_part(path: str, cat_ids: Dict[str, int], polygons: bool) -> Tuple[dict, List[dict]]:
    """One part file as its COCO image record and annotations (their ``id`` set to 0)."""
    with open(path, encoding="utf-8") as f:
        part = json.load(f)
    img = dict(part["image"])
    img["id"] = img["index"] + 1
    anns = []
    for a in part["annotations"]:
        a = dict(a)
        a["id"] = 0  # annotation ids count through the dataset: set by the reader in order
        a["image_id"] = img["id"]
        a["category_id"] = cat_ids[a.pop("category")]
        if polygons:
            a["segmentation"] = rle_to_polygons(a["segmentation"])
        anns.append(a)
    return img, anns


_ID_MARK = ',"id":0,"image_id":'  # in an annotation's text: "id" is set just before "image_id"
SUMMARY_KEYS = ("id", "index", "split", "settle")  # of an image, as encoded() gives it from processes
CHUNK = 200  # part files per task of a parallel read (~4 MB of text in flight each)


_EXPORTERS: tuple = ()  # in a process of a parallel read: copies of the begun exporters


def _set_exporters(exporters: tuple) -> None:
    global _EXPORTERS
    _EXPORTERS = exporters


def _encode_chunk(paths: List[str], cat_ids: Dict[str, int], polygons: bool) -> List[tuple]:
    """A process's share of :meth:`Coco.encoded`: per image its summary (see there), its
    text, its annotations' category ids and texts split around their ``"id":0``, and the
    exporters' summaries (their files for the image written here)."""
    out = []
    for path in paths:
        img, anns = _from_part(path, cat_ids, polygons)
        texts = []
        for a in anns:
            t = _dumps(a)
            k = t.rindex(_ID_MARK) + len(',"id":')  # at the 0
            texts.append((a["category_id"], t[:k], t[k + 1:]))
        exported = [e.image(img, anns) for e in _EXPORTERS]
        out.append(({k: img[k] for k in SUMMARY_KEYS if k in img}, _dumps(img), texts, exported))
    return out


def _encoded_in_processes(paths: Iterable[str], cat_ids: Dict[str, int], polygons: bool,
                          processes: int, exporters: Sequence = ()) -> Iterator[Encoded]:
    import itertools
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    def chunk_paths():
        it = iter(paths)
        while True:
            chunk = list(itertools.islice(it, CHUNK))
            if not chunk:
                return
            yield chunk

    chunks = chunk_paths()
    next_id = 1
    with ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context("spawn"),
                             initializer=_set_exporters, initargs=(tuple(exporters),)) as ex:
        ahead: deque = deque()
        for chunk in itertools.islice(chunks, 2 * processes):  # bounded: results wait in memory
            ahead.append(ex.submit(_encode_chunk, chunk, cat_ids, polygons))
        while ahead:
            done = ahead.popleft().result()
            chunk = next(chunks, None)
            if chunk is not None:
                ahead.append(ex.submit(_encode_chunk, chunk, cat_ids, polygons))
            for img, img_text, split, exported in done:
                anns, texts = [], []
                for category_id, head, tail in split:
                    anns.append({"id": next_id, "category_id": category_id})
                    texts.append(f"{head}{next_id}{tail}")
                    next_id += 1
                yield img, anns, img_text, texts, exported


class _JsonDoc:
    """One COCO file written as a stream: images into the file itself (an AtomicFile),
    annotations into an anonymous temporary file appended by ``commit``. Byte-identical to
    ``json.dumps(doc, separators=(",", ":"))`` of the whole document."""

    def __init__(self, path: str, head: str):
        self._out = AtomicFile(path, "w")
        try:
            self._ann = tempfile.TemporaryFile("w+", encoding="utf-8", dir=os.path.dirname(path) or ".")
            self._out.write(head + ',"images":[')
        except BaseException:
            self._out.discard()
            raise
        self._sep_img = self._sep_ann = ""

    def add(self, img: str, anns: List[str]) -> None:
        """One image and its annotations, each already encoded by ``_dumps``."""
        self._out.write(self._sep_img + img)
        self._sep_img = ","
        for a in anns:
            self._ann.write(self._sep_ann + a)
            self._sep_ann = ","

    def commit(self) -> None:
        self._out.write('],"annotations":[')
        self._ann.seek(0)
        shutil.copyfileobj(self._ann, self._out)
        self._out.write("]}")
        self._out.commit()
        self._ann.close()

    def discard(self) -> None:
        self._ann.close()
        self._out.discard()


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def write(output_dir: str, ds: Coco, observe: Optional[Callable[[dict, List[dict]], None]] = None,
          exporters: Sequence = (), plain: Optional[Coco] = None) -> None:
    """Write annotations.json (last: its appearance marks the dataset complete), plus
    annotations_<split>.json when the images fall in more than one split, and every format
    of ``exporters`` (:class:`~.common.Exporter` s, begun here with ``plain``: the same
    records, default ``ds``), in one streaming pass over ``ds``. ``observe(image,
    annotations)`` is called for every image on the way."""
    head = _dumps({"info": ds.info, "licenses": [], "categories": ds.categories})[:-1]
    whole = _JsonDoc(os.path.join(output_dir, ANNOTATIONS_FILE), head)
    splits: Dict[str, _JsonDoc] = {}
    try:
        for e in exporters:
            e.begin(plain if plain is not None else ds)
        for img, anns, img_text, ann_texts, exported in ds.encoded(exporters):  # encoded once, for both files
            whole.add(img_text, ann_texts)
            name = img.get("split", "train")
            if name not in splits:
                splits[name] = _JsonDoc(os.path.join(output_dir, f"annotations_{name}.json"), head)
            splits[name].add(img_text, ann_texts)
            for e, summary in zip(exporters, exported):
                e.collect(summary)
            if observe is not None:
                observe(img, anns)
        for e in exporters:
            e.end()
        several = len(splits) > 1
        for name in ("train", "val", "test"):
            if several and name in splits:
                splits.pop(name).commit()
            elif os.path.exists(os.path.join(output_dir, f"annotations_{name}.json")):
                os.unlink(os.path.join(output_dir, f"annotations_{name}.json"))
        whole.commit()
    finally:
        for doc in (whole, *splits.values()):
            doc.discard()
        for e in exporters:
            e.discard()
