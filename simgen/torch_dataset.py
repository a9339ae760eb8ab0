"""A PyTorch ``Dataset`` over a simgen dataset, in torchvision's detection format.

torch is an optional extra (``pip install 'simgen[torch]'``); nothing imports it unless this
module is used. Each item is ``(image, target)``: image a float tensor [3, H, W] in [0, 1]
(or whatever ``transforms`` returns), target a dict with ``boxes`` (float [N, 4], x1 y1 x2 y2
in pixels, x2 = x + w), ``labels`` (int64 category ids), ``masks`` (uint8 [N, H, W]),
``image_id``, ``area``, ``iscrowd``, and simgen's ``visibility``, ``truncation``,
``instance_ids``. Filtered (ignored) objects are left out unless ``include_ignored``
(then they come with iscrowd = 1).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np

from .writers.common import SPLITS

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as _exc:  # pragma: no cover - exercised only without torch
    raise ImportError("simgen.torch_dataset needs PyTorch: pip install 'simgen[torch]' "
                      "(it pins a CPU build; see README)") from _exc


class SimGenDetection(Dataset):
    """The dataset's images (those of ``split``, if given) with their targets.

    ``annotations.json`` is not loaded: an index of byte offsets (20 bytes an image, numpy
    arrays that DataLoader workers share) locates each image's records, read when the item
    is (~1 ms). A file another tool reordered is loaded whole instead."""

    def __init__(self, root: str, split: Optional[str] = None, transforms: Optional[Callable] = None,
                 include_ignored: bool = False):
        from .writers.coco import open_index

        self.root, self.transforms, self.include_ignored = root, transforms, include_ignored
        self._index = open_index(root)  # a missing or broken annotations.json: a one-line SimGenError
        self.categories = {c["id"]: c["name"] for c in self._index.categories}
        if split is not None and split not in SPLITS and split not in self._index.split_names:
            from .errors import SimGenError

            # an unknown name would give an empty dataset, and a training run on nothing
            raise SimGenError(f"split '{split}' is not one of {', '.join(SPLITS)} (fix: split='train', "
                              f"'val', 'test' or None for every image)")
        self._positions = (np.arange(len(self._index)) if split is None else self._index.of_split(split))

    def __len__(self) -> int:
        return len(self._positions)

    def record(self, k: int):
        """Item ``k``'s COCO image record and its annotations (the ones the target holds)."""
        img, anns = self._index[int(self._positions[k])]
        return img, [a for a in anns if self.include_ignored or not a.get("ignore")]

    def __getitem__(self, k: int):
        from .io import read_png

        img, anns = self.record(k)
        rgb = read_png(os.path.join(self.root, "images", img["file_name"]))
        inst = read_png(os.path.join(self.root, img["mask_file"])).astype(np.int64)
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        masks = np.stack([inst == a["instance_id"] for a in anns]).astype(np.uint8) if anns else \
            np.zeros((0,) + inst.shape, np.uint8)
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": int(img["id"]),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
            "visibility": torch.tensor([a.get("visibility", 1.0) for a in anns], dtype=torch.float32),
            "truncation": torch.tensor([a.get("truncation", 0.0) for a in anns], dtype=torch.float32),
            "instance_ids": torch.tensor([a["instance_id"] for a in anns], dtype=torch.int64),
        }
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch):
    """Detection batches keep per-image targets: a tuple of images and a tuple of targets."""
    return tuple(zip(*batch))
