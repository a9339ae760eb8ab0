"""Pascal VOC: ``voc/Annotations/<name>.xml``, ``voc/JPEGImages/<name>.png`` (linked; the
folder keeps VOC's name, the files stay lossless PNG) and ``voc/ImageSets/Main/{split}.txt``.
Boxes use VOC's 1-based inclusive pixel coordinates: xmin = x + 1, xmax = x + w.
``truncated`` is 1 when more than 1% of the object is outside the frame; ``difficult`` is 1
for objects rated hard or beyond, or filtered (ignore)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from . import register
from .common import Exporter, link_or_copy, split_of


def _sub(parent, tag, text=None):
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


@register("voc")
class Voc(Exporter):
    folder = "voc"

    def begin(self, coco) -> None:
        super().begin(coco)
        for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(self.tmp, sub))
        self.names = {c["id"]: c["name"] for c in self.categories}
        self._lists = {}  # split -> its open ImageSets/Main/<split>.txt

    def image(self, img: dict, anns: list):
        stem = os.path.splitext(img["file_name"])[0]
        link_or_copy(os.path.join(self.dataset, "images", img["file_name"]),
                     os.path.join(self.tmp, "JPEGImages", img["file_name"]))
        root = ET.Element("annotation")
        _sub(root, "folder", "JPEGImages")
        _sub(root, "filename", img["file_name"])
        src = _sub(root, "source")
        _sub(src, "database", "simgen")
        size = _sub(root, "size")
        _sub(size, "width", img["width"])
        _sub(size, "height", img["height"])
        _sub(size, "depth", 3)
        _sub(root, "segmented", 0)
        for a in anns:
            x, y, w, h = a["bbox"]
            obj = _sub(root, "object")
            _sub(obj, "name", self.names[a["category_id"]])
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", int(a.get("truncation", 0.0) > 0.01))
            _sub(obj, "difficult", int(bool(a.get("ignore")) or a.get("difficulty") in ("hard", "beyond_hard")))
            _sub(obj, "occluded", int(a.get("visibility", 1.0) < 0.99))
            box = _sub(obj, "bndbox")
            _sub(box, "xmin", x + 1)
            _sub(box, "ymin", y + 1)
            _sub(box, "xmax", x + w)
            _sub(box, "ymax", y + h)
        ET.indent(root)
        ET.ElementTree(root).write(os.path.join(self.tmp, "Annotations", f"{stem}.xml"), encoding="utf-8",
                                   xml_declaration=False)
        return split_of(img), stem

    def collect(self, summary) -> None:
        split, stem = summary
        if split not in self._lists:
            self._lists[split] = open(os.path.join(self.tmp, "ImageSets", "Main", f"{split}.txt"), "w")
        self._lists[split].write(stem + "\n")

    def _close(self) -> None:
        for f in getattr(self, "_lists", {}).values():  # (none if begin never ran)
            f.close()
        self._lists = {}

    def end(self) -> str:
        self._close()
        return super().end()

    def discard(self) -> None:
        self._close()
        super().discard()
