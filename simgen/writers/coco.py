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
import re
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..dataset import read_part, register_output
from ..io import AtomicFile
from .common import SPLITS

ANNOTATIONS_FILE = register_output("annotations.json", "every run (COCO)")
SPLIT_FILES = tuple(register_output(f"annotations_{s}.json", "every run (COCO)") for s in SPLITS)


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
    if files.get("normals"):
        img["normals_file"] = files["normals"]
    if sample.scene_index is not None:
        img["scene_index"] = int(sample.scene_index)
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
            **a.extra,
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
                   polygons: bool = False, processes: int = 1,
                   category_fields: Optional[Dict[str, dict]] = None) -> "Coco":
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

        return cls(info, [{"id": i, "name": c, "supercategory": "object", **(category_fields or {}).get(c, {})}
                          for c, i in cat_ids.items()], images,
                   encoded if processes > 1 else None)

    @classmethod
    def from_file(cls, path: str) -> "Coco":
        """From a COCO file read as a stream (memory does not grow with the file): its images
        in file order, each with the annotations that follow the previous image's. Files as
        simgen writes them qualify (images in index order, annotations grouped by image in
        the same order); iterating over any other raises :class:`OutOfOrder` (load it with
        :meth:`from_doc` then). A file that is not COCO raises ValueError here."""
        head, arrays = _layout(path)

        def images():
            return ((img, anns) for _, img, _, anns in _grouped(path, arrays))

        return cls(head.get("info", {}), head["categories"], images)

    @classmethod
    def from_doc(cls, doc: dict, unknown: Optional[Callable[[dict], None]] = None) -> "Coco":
        """From a loaded COCO document (e.g. an existing annotations.json), in image-index
        order; ``unknown`` as in :func:`by_image`."""
        def images():
            grouped = by_image(doc["images"], doc["annotations"], unknown)
            for img in sorted(doc["images"], key=lambda i: i.get("index", i["id"])):  # index order
                yield img, grouped[img["id"]]

        return cls(doc.get("info", {}), doc["categories"], images)


def missing_annotations(path: str) -> str:
    """The one line for a dataset folder whose annotations.json does not exist."""
    return (f"{path} is missing: not a finished simgen dataset (fix: run simgen first, or finish the run: "
            f"the same command resumes it)")


def dataset_annotations(path: str) -> str:
    """``path`` (a dataset's annotations.json) when it exists, else the one-line SimGenError."""
    from ..errors import SimGenError

    if not os.path.isfile(path):
        raise SimGenError(missing_annotations(path))
    return path


def not_coco(path: str, exc: Exception, fix: str = "give the annotations.json of a COCO dataset"):
    """The one-line error for a COCO file that does not parse (broken, truncated, not text)
    or lacks COCO's keys: what read_coco and open_index raise as ValueError or KeyError."""
    from ..errors import SimGenError

    return SimGenError(f"{path} is not a COCO instances file ({type(exc).__name__}: {exc}); fix: {fix}")


def read_coco(path: str, use: Callable[[Coco], object], unknown: Optional[Callable[[dict], None]] = None):
    """``use(coco)`` on the COCO file at ``path`` read as a stream (:meth:`Coco.from_file`);
    when it turns out not to be laid out as simgen writes it (edited or written by another
    tool), ``use`` runs again on the file loaded whole (:meth:`Coco.from_doc`, ``unknown``
    as there). Returns what ``use`` returns; a file that is not COCO raises ValueError or
    KeyError."""
    try:
        return use(Coco.from_file(path))
    except OutOfOrder:
        return use(Coco.from_doc(json.load(open(path, encoding="utf-8")), unknown))


def by_image(images: List[dict], annotations: Iterable[dict],
             unknown: Optional[Callable[[dict], None]] = None) -> Dict[int, List[dict]]:
    """Image id -> its annotations, in file order, for a COCO file loaded whole (any order).
    An annotation of an image not in ``images`` is handed to ``unknown`` (to report or skip
    it); without one it raises KeyError."""
    grouped: Dict[int, List[dict]] = {img["id"]: [] for img in images}
    for a in annotations:
        group = grouped.get(a["image_id"])
        if group is not None:
            group.append(a)
        elif unknown is not None:
            unknown(a)
        else:
            raise KeyError(f"annotation {a.get('id')} has unknown image_id {a['image_id']}")
    return grouped


class OutOfOrder(ValueError):
    """A COCO file whose annotations are not grouped by image in image order (or whose images
    are not in index order): it cannot be read as a stream."""


class _Stream:
    """JSON values read one at a time from a file, starting at a byte offset, a chunk at a
    time: memory holds one chunk and one value, whatever the file's size."""

    CHUNK = 1 << 20
    _SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, path: str, offset: int = 0):
        import codecs

        self._f = open(path, "rb")
        self._f.seek(offset)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._buf, self._pos, self._base, self._eof = "", 0, offset, False  # _base: byte offset of _buf[0]
        self._ascii = True  # so far: then characters are bytes (simgen writes ASCII JSON)

    def close(self) -> None:
        self._f.close()

    def _more(self) -> bool:
        data = self._f.read(self.CHUNK)
        self._base += self._pos if self._ascii else len(self._buf[:self._pos].encode("utf-8"))
        text = self._utf8.decode(data, final=not data)
        self._ascii = self._ascii and text.isascii()
        self._buf = self._buf[self._pos:] + text
        self._pos = 0
        self._eof = not data
        return bool(data)

    def peek(self) -> str:
        """The next character that is not white space (not consumed)."""
        while True:
            self._pos = self._SPACE.match(self._buf, self._pos).end()
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                raise ValueError("unexpected end of the file")

    def take(self, chars: str) -> str:
        """Consume the next character, one of ``chars``."""
        c = self.peek()
        if c not in chars:
            raise ValueError(f"expected one of {chars!r} at byte {self.offset()}, found {c!r}")
        self._pos += 1
        return c

    def value(self):
        self.peek()
        while True:
            try:
                v, end = self._json.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if not self._more():
                    raise
                continue
            if end == len(self._buf) and not self._eof and not isinstance(v, (dict, list, str)):
                self._more()  # a number at the chunk's end may go on in the next chunk
                continue
            self._pos = end
            return v

    def offset(self) -> int:
        """Byte offset in the file of the next character."""
        return self._base + (self._pos if self._ascii else len(self._buf[:self._pos].encode("utf-8")))

    def items_at(self) -> Iterator[Tuple[int, object]]:
        """The values of the array whose '[' was just consumed, each with its byte offset,
        then its ']'."""
        if self.peek() == "]":
            self._pos += 1
            return
        while True:
            self.peek()
            at = self.offset()
            yield at, self.value()
            if self.take(",]") == "]":
                return


def _layout(path: str) -> Tuple[dict, Dict[str, int]]:
    """The top-level values of a COCO file except its images and annotations, and the byte
    offsets just after the '[' of those two arrays. Reads the top level in order, stepping
    through an array's values without keeping them, and stops once it has the categories
    and both arrays (simgen writes the annotations last: only the images are stepped over)."""
    s = _Stream(path)
    head: Dict[str, object] = {}
    arrays: Dict[str, int] = {}
    try:
        s.take("{")
        if s.peek() != "}":
            while True:
                key = s.value()
                s.take(":")
                if key in ("images", "annotations"):
                    s.take("[")
                    arrays[key] = s.offset()
                    if len(arrays) == 2 and "categories" in head:
                        break
                    for _ in s.items_at():
                        pass
                else:
                    head[key] = s.value()
                if s.take(",}") == "}":
                    break
    finally:
        s.close()
    if "categories" not in head or len(arrays) < 2:
        raise ValueError(f"{path} has no {'categories' if 'categories' not in head else 'images or annotations'}")
    return head, arrays


def _grouped(path: str, arrays: Dict[str, int]) -> Iterator[Tuple[int, dict, int, List[dict]]]:
    """Per image, in file order: its byte offset, its record, the byte offset of its first
    annotation (0 when it has none) and its annotations, read through one cursor on the
    images and one on the annotations. Raises :class:`OutOfOrder` when the annotations are
    not grouped by image in the images' order, or the images not in index order."""
    imgs, anns = _Stream(path, arrays["images"]), _Stream(path, arrays["annotations"])
    try:
        pending = anns.items_at()
        nxt, index = next(pending, None), -1
        for at, img in imgs.items_at():
            if img.get("index", index + 1) <= index:
                raise OutOfOrder(f"image {img['id']} comes after a later image")
            index = img.get("index", index + 1)
            first, group = (nxt[0] if nxt is not None else 0), []
            while nxt is not None and nxt[1]["image_id"] == img["id"]:
                group.append(nxt[1])
                nxt = next(pending, None)
            yield at, img, (first if group else 0), group
        if nxt is not None:
            raise OutOfOrder(f"annotation {nxt[1]['id']} (image {nxt[1]['image_id']}) is not with its image")
    finally:
        imgs.close()
        anns.close()


class CocoIndex:
    """Random access to the images of a COCO file laid out as simgen writes it, without
    loading it: per image, the byte offsets of its record and of its first annotation, and
    its annotation count, in numpy arrays (20 bytes an image: a million-image dataset's
    index takes 20 MB, and PyTorch's DataLoader workers share it instead of copying Python
    objects). Built in one streaming pass; raises :class:`OutOfOrder` like
    :meth:`Coco.from_file`. ``index[k]`` is image k (file order) and its annotations."""

    def __init__(self, path: str):
        head, arrays = _layout(path)
        self.path, self.categories, self.info = path, head["categories"], head.get("info", {})
        img_at, ann_at, counts, splits = [], [], [], []
        for at, img, first, anns in _grouped(path, arrays):
            img_at.append(at)
            ann_at.append(first)
            counts.append(len(anns))
            splits.append(img.get("split", "train"))
        self._img_at, self._ann_at = np.array(img_at, np.int64), np.array(ann_at, np.int64)
        self._counts = np.array(counts, np.int32)
        names = sorted(set(splits))
        self.split_names = names
        self._split = np.array([names.index(x) for x in splits], np.int8) if splits else np.zeros(0, np.int8)
        self._f = None

    def __len__(self) -> int:
        return len(self._img_at)

    def of_split(self, split: str) -> np.ndarray:
        """Positions (file order) of the images in ``split``."""
        if split not in self.split_names:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self._split == self.split_names.index(split))

    def __getitem__(self, k: int) -> Tuple[dict, List[dict]]:
        if self._f is None or self._pid != os.getpid():  # one handle per process (DataLoader workers fork)
            self._f, self._pid = open(self.path, "rb"), os.getpid()
        img = self._values(int(self._img_at[k]), 1)[0]
        n = int(self._counts[k])
        return img, (self._values(int(self._ann_at[k]), n) if n else [])

    def _values(self, at: int, n: int) -> list:
        """``n`` comma-separated JSON values from byte offset ``at``."""
        dec, size = json.JSONDecoder(), 16384
        while True:
            self._f.seek(at)
            data = self._f.read(size)
            text = data.decode("utf-8", errors="ignore")  # a character cut at the end is read again
            out, pos = [], 0
            try:
                while len(out) < n:
                    v, pos = dec.raw_decode(text, pos)
                    out.append(v)
                    while pos < len(text) and text[pos] in " \t\r\n,":
                        pos += 1
                return out
            except json.JSONDecodeError:
                if len(data) < size:
                    raise
                size *= 4

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_f"] = None
        return state


class LoadedIndex:
    """:class:`CocoIndex`'s interface over a COCO file loaded whole: for files another tool
    wrote or reordered. Annotations of unknown images are skipped."""

    def __init__(self, path: str):
        coco = json.load(open(path, encoding="utf-8"))
        self.path, self.categories, self.info = path, coco["categories"], coco.get("info", {})
        self._images = coco["images"]
        self._anns = by_image(self._images, coco["annotations"], unknown=lambda a: None)
        self.split_names = sorted({i.get("split", "train") for i in self._images})

    def __len__(self) -> int:
        return len(self._images)

    def of_split(self, split: str) -> np.ndarray:
        return np.array([k for k, i in enumerate(self._images) if i.get("split", "train") == split], np.int64)

    def __getitem__(self, k: int) -> Tuple[dict, List[dict]]:
        img = self._images[k]
        return img, self._anns[img["id"]]


def open_index(dataset: str, fix: str = "give the folder of a finished simgen dataset"):
    """Random access to the images of the dataset folder's annotations.json: a
    :class:`CocoIndex` (nothing loaded) when it is laid out as simgen writes it, else a
    :class:`LoadedIndex`. A missing file, or one that is not COCO, raises the one-line
    SimGenError (``fix`` says what to do about the latter)."""
    path = dataset_annotations(os.path.join(dataset, ANNOTATIONS_FILE))
    try:
        try:
            return CocoIndex(path)
        except OutOfOrder:
            return LoadedIndex(path)
    except (ValueError, KeyError) as exc:
        raise not_coco(path, exc, fix) from None


def _from_part(path: str, cat_ids: Dict[str, int], polygons: bool) -> Tuple[dict, List[dict]]:
    """One part file as its COCO image record and annotations (their ``id`` set to 0)."""
    part = read_part(path)
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
    from ..parallel import chunked, ordered_map

    next_id = 1
    for done in ordered_map(_encode_chunk, chunked(paths, CHUNK), processes, cat_ids, polygons,
                            initializer=_set_exporters, initargs=(tuple(exporters),),
                            what="writing the dataset files"):
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
        for name in SPLITS:
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
