"""Ultralytics reads the YOLO export as it is and trains on it for one epoch, offline.
Marked `training` (run alone: pytest -m training); skipped when Ultralytics is absent."""
import os

import pytest
from conftest import run_cli, run_ultralytics

pytestmark = [pytest.mark.slow, pytest.mark.training]
# find_spec, not import: importing Ultralytics here would patch Pillow for every later test.
import importlib.util  # noqa: E402

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("ultralytics") is None:
    pytest.skip("needs torch and ultralytics (see examples/train_yolo.py)", allow_module_level=True)


def test_ultralytics_loads_and_trains_one_epoch(tmp_path):
    out = str(tmp_path / "d")
    r = run_cli("num_images=16", "seed=1", "camera.width=320", "camera.height=240", "formats=[coco,yolo]",
                "splits.train=0.75", "splits.val=0.25", "objects.asset_sets=[primitives]", "progress=false",
                f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    code = f"""
from pathlib import Path
from ultralytics import YOLO
from ultralytics.data.utils import load_dataset_cache_file
YOLO("yolov8n.yaml").train(data={os.path.join(out, 'yolo', 'data.yaml')!r}, epochs=1, imgsz=320, batch=8,
    workers=0, device="cpu", project={str(tmp_path / 'runs')!r}, name="t", plots=False, amp=False)
for split in ("train", "val"):
    nf, nm, ne, nc, n = load_dataset_cache_file(Path({os.path.join(out, 'yolo', 'labels')!r}) / f"{{split}}.cache")["results"]
    print("CACHE", split, nf, nm, ne, nc, n)
"""
    stdout = run_ultralytics(code, tmp_path, timeout=900)
    caches = [line.split() for line in stdout.splitlines() if line.startswith("CACHE")]
    assert len(caches) == 2
    for _, split, nf, nm, _ne, nc, n in caches:
        assert int(nm) == 0 and int(nc) == 0 and int(nf) == int(n) > 0, (split, nf, nm, nc)  # none missing or corrupt
    assert os.path.isfile(os.path.join(tmp_path, "runs", "t", "weights", "last.pt"))


def test_the_example_closes_the_loop(tmp_path):
    """train -> evaluate on held-out images -> focus -> fine-tune (focused and control) ->
    evaluate: the plumbing, at a toy size (the measured run is in docs/evaluate.md)."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "loop"
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "ycfg"))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_yolo.py"), "--images", "20",
                        "--epochs", "1", "--loop", "--loop-images", "10", "--loop-epochs", "1", "--out", str(out),
                        "--imgsz", "160"], capture_output=True, text=True, timeout=900,
                       env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "before  control  focused" in p.stdout and (out / "focus.yaml").is_file()
    for tag in ("before", "control", "focus"):
        assert (out / f"evaluate-{tag}" / "eval.json").is_file() and (out / f"predictions-{tag}.json").is_file()
