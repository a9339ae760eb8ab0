"""Generate a dataset with simgen and train a small YOLO detector on it, fully offline.

    python examples/train_yolo.py --images 200 --epochs 25 --out out/yolo_demo

Needs the training tools (AGPL Ultralytics stays out of simgen's own dependencies):
    pip install 'simgen[torch]'
    pip install --no-deps ultralytics==8.4.190 ultralytics-thop torchvision==0.28.0
    pip install psutil polars requests
(--no-deps keeps Ultralytics' opencv-python from replacing opencv-python-headless.)
On machines whose torchvision has no CPU ops, tv_cpu_shim.py beside this file supplies
them; elsewhere it does nothing. YOLO_OFFLINE=1 and YOLO_AUTOINSTALL=0 stop Ultralytics
from checking for updates or running pip; plots=False avoids its font download.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--out", default="out/yolo_demo")
    a = ap.parse_args()

    from simgen.config import compose
    from simgen.runner import run

    data = os.path.join(a.out, "data")
    cfg = compose([f"num_images={a.images}", f"output_dir={data}", "formats=[coco,yolo]", "splits.train=0.8",
                   "splits.val=0.2", f"camera.width={a.imgsz}", f"camera.height={a.imgsz * 3 // 4}",
                   "progress=false"])
    print(f"simgen: {run(cfg).line()}")

    import tv_cpu_shim

    tv_cpu_shim.install()
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")  # from scratch: no pretrained weights to download
    model.train(data=os.path.join(data, "yolo", "data.yaml"), epochs=a.epochs, imgsz=a.imgsz, batch=16,
                workers=0, device="cpu", project=os.path.abspath(a.out), name="train", exist_ok=True,
                plots=False, amp=False)
    metrics = model.val(data=os.path.join(data, "yolo", "data.yaml"), split="val", plots=False, workers=0)
    print(f"mAP50 on the held-out generated val split: {metrics.box.map50:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
