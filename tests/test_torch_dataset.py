"""The training feed: a PyTorch Dataset in torchvision's detection format, with a DataLoader."""
import json
import os

import numpy as np
import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def test_dataset_and_dataloader(tmp_path):
    from torch.utils.data import DataLoader

    from simgen.torch_dataset import SimGenDetection, collate

    out = str(tmp_path / "d")
    r = run_cli("num_images=4", "camera.width=160", "camera.height=120", "objects.count=[2,5]",
                "progress=false", "splits.train=0.5", "splits.val=0.5", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    coco = json.load(open(os.path.join(out, "annotations.json")))
    ds = SimGenDetection(out)
    assert len(ds) == 4
    assert len(SimGenDetection(out, split="train")) + len(SimGenDetection(out, split="val")) == 4
    images, targets = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert len(images) == 2 and images[0].shape == (3, 120, 160) and images[0].dtype == torch.float32
    t = targets[0]
    anns = [a for a in coco["annotations"] if a["image_id"] == t["image_id"] and not a["ignore"]]
    assert t["boxes"].shape == (len(anns), 4) and t["masks"].shape == (len(anns), 120, 160)
    for box, m, a in zip(t["boxes"].numpy(), t["masks"].numpy(), anns):
        x, y, w, h = a["bbox"]
        assert np.allclose(box, [x, y, x + w, y + h])
        assert m.sum() == a["area"]
    assert t["labels"].tolist() == [a["category_id"] for a in anns]
