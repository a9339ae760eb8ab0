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
    assert len(SimGenDetection(out, split="test")) == 0  # a split with no images: empty, as asked
    from simgen.errors import SimGenError

    with pytest.raises(SimGenError, match="split 'vall' is not one of train, val, test"):
        SimGenDetection(out, split="vall")  # a typo: an error, not an empty dataset
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
    # Items come through a byte-offset index of annotations.json, not the loaded file: the same
    # records, in any DataLoader worker process, and a reordered file is loaded whole instead.
    expect = {i["id"]: (i, [a for a in coco["annotations"] if a["image_id"] == i["id"] and not a["ignore"]])
              for i in coco["images"]}
    assert [ds.record(k) for k in range(4)] == [expect[i["id"]] for i in coco["images"]]
    seen = [t["image_id"] for _, ts in DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate) for t in ts]
    assert seen == [i["id"] for i in coco["images"]]
    from simgen.writers.coco import CocoIndex
    assert CocoIndex(os.path.join(out, "annotations.json"))._img_at.nbytes == 4 * 8
    last = coco["images"][-1]["id"]
    coco["annotations"] = ([a for a in coco["annotations"] if a["image_id"] == last]
                           + [a for a in coco["annotations"] if a["image_id"] != last])
    json.dump(coco, open(os.path.join(out, "annotations.json"), "w"))
    moved = SimGenDetection(out, split="val")
    assert [moved.record(k) for k in range(len(moved))] == [expect[i["id"]] for i in coco["images"]
                                                            if i["split"] == "val"]


@pytest.mark.parametrize("content", [None, b"\x8f\x00 not json" * 20, b'{"images": [{"id": 1}], "annotations": [{"id": 1'])
def test_a_missing_or_broken_dataset_is_one_line(tmp_path, content):
    """The training feed names the problem and the fix in one line, like the CLI (no
    FileNotFoundError / UnicodeDecodeError / JSONDecodeError traceback from inside the index)."""
    from simgen.errors import SimGenError
    from simgen.torch_dataset import SimGenDetection

    path = tmp_path / "annotations.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SimGenError) as err:
        SimGenDetection(str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "fix:" in msg
    assert ("is missing" if content is None else "is not a COCO instances file") in msg
