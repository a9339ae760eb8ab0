"""Generate a dataset with simgen and train a small YOLO detector on it, fully offline, on the CPU.

    python examples/train_yolo.py                                   # 500 images, 10 epochs: ~10-15 min on 2 cores
    python examples/train_yolo.py --data <dataset>/yolo/data.yaml   # train on a dataset you made
    python examples/train_yolo.py --transfer out/transfer/target/test
        # the 7 objects of bench/transfer/objects.yaml, also scored on images another renderer made

It prints mAP50 / mAP50-95 on the generated val split and, with --transfer, on the transfer
benchmark's target set (docs/transfer.md; `make bench-transfer` renders it).

Needs the training tools (AGPL Ultralytics stays out of simgen's own dependencies):
    pip install 'simgen[torch]'
    pip install --no-deps ultralytics==8.4.190 ultralytics-thop torchvision==0.28.0
    pip install psutil polars requests
(--no-deps keeps Ultralytics' opencv-python from replacing opencv-python-headless.)
On machines whose torchvision has no CPU ops, tv_cpu_shim.py beside this file supplies
them; elsewhere it does nothing. YOLO_OFFLINE=1 and YOLO_AUTOINSTALL=0 stop Ultralytics
from checking for updates or running pip; plots=False avoids its font download.

The recipe for short CPU runs: nbs=batch (Ultralytics accumulates gradients to 64 images by
default, which leaves a run of a few hundred images a few dozen optimizer steps) and
close_mosaic=epochs//5 (Ultralytics' default, 10, switches mosaic off for the whole of any
run of 10 epochs or fewer).
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TRANSFER_OBJECTS = os.path.join(os.path.dirname(HERE), "bench", "transfer", "objects.yaml")


def short_run_recipe(epochs: int, batch: int) -> dict:
    """Ultralytics train() arguments for short CPU runs (see above); the transfer benchmark
    trains with the same."""
    return dict(nbs=batch, close_mosaic=max(1, epochs // 5))


def fail(msg: str) -> int:
    print(f"train_yolo: error: {msg}", file=sys.stderr)
    return 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500, help="images to generate (default 500)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--data", help="an existing data.yaml (a simgen dataset's yolo/data.yaml): no generation")
    ap.add_argument("--transfer", help="a transfer target set (images/, labels/): train on its 7 objects, score on it")
    ap.add_argument("--out", default="out/yolo_demo")
    ap.add_argument("--loop", action="store_true",
                    help="then close the loop: evaluate on a held-out set, simgen focus, fine-tune on focused images "
                         "(and, as the control, on as many unfocused ones), evaluate both on the held-out set")
    ap.add_argument("--loop-images", type=int, help="held-out set and each fine-tune set (default --images // 2)")
    ap.add_argument("--loop-epochs", type=int, help="fine-tune epochs (default --epochs // 2)")
    ap.add_argument("overrides", nargs="*", help="simgen overrides for the generated dataset")
    a = ap.parse_args()
    if a.images < 10 or a.epochs < 1 or a.batch < 1 or a.imgsz < 32:
        return fail("--images >= 10, --epochs >= 1, --batch >= 1 and --imgsz >= 32 (fix: raise the value)")
    if a.data and not os.path.isfile(a.data):
        return fail(f"--data '{a.data}' is not a file (fix: give <dataset>/yolo/data.yaml of a dataset made "
                    f"with formats=[coco,yolo])")
    if a.transfer and not os.path.isdir(os.path.join(a.transfer, "images")):
        return fail(f"--transfer '{a.transfer}' holds no images/ folder (fix: make bench-transfer renders "
                    f"out/transfer/target/test)")

    from simgen.errors import SimGenError

    if a.loop and a.data:
        return fail("--loop generates its datasets; it cannot start from --data (fix: leave --data out)")
    data = a.data
    if not data:
        from simgen.config import compose
        from simgen.runner import run

        folder = os.path.join(a.out, "data")
        over = [f"num_images={a.images}", f"output_dir={folder}", "formats=[coco,yolo]", "splits.train=0.85",
                "splits.val=0.15", f"camera.width={a.imgsz}", f"camera.height={a.imgsz * 3 // 4}", "progress=false"]
        if a.transfer:
            over.append(f"objects.asset_sets=[{TRANSFER_OBJECTS}]")
        try:
            print(f"simgen: {run(compose(over + a.overrides)).line()}")
        except SimGenError as exc:
            return fail(str(exc))
        data = os.path.join(folder, "yolo", "data.yaml")

    import yaml

    names = yaml.safe_load(open(data, encoding="utf-8"))["names"]
    import tv_cpu_shim

    tv_cpu_shim.install()
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")  # from scratch: no pretrained weights to download
    model.train(data=data, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, workers=0, device="cpu",
                project=os.path.abspath(a.out), name="train", exist_ok=True, plots=False, amp=False,
                pretrained=False, val=False, seed=0, **short_run_recipe(a.epochs, a.batch))
    where = dict(project=os.path.abspath(a.out), exist_ok=True, plots=False, workers=0, verbose=False)
    m = model.val(data=data, split="val", imgsz=a.imgsz, name="val", **where)
    print(f"generated val split: mAP50 {m.box.map50:.3f}, mAP50-95 {m.box.map:.3f}")
    if a.transfer:
        listed = sorted(names.values()) if isinstance(names, dict) else sorted(names)
        target = os.path.join(os.path.abspath(a.out), "transfer.yaml")
        with open(target, "w", encoding="utf-8") as f:  # the target's class ids follow simgen's sorted names
            yaml.safe_dump({"train": os.path.abspath(os.path.join(a.transfer, "images")),
                            "val": os.path.abspath(os.path.join(a.transfer, "images")),
                            "names": dict(enumerate(listed))}, f)
        t = model.val(data=target, split="val", imgsz=a.imgsz, name="val-transfer", **where)
        print(f"transfer set ({a.transfer}): mAP50 {t.box.map50:.3f}, mAP50-95 {t.box.map:.3f}")
    if a.loop:
        return close_the_loop(a, model, data, [o for o in over[2:] if not o.startswith("splits.")] + a.overrides)
    return 0


def predictions(model, dataset: str, imgsz: int, path: str) -> str:
    """The model's detections on a simgen dataset's images, as a COCO results file (YOLO class
    k is the dataset's k-th category, as simgen's YOLO writer numbers them)."""
    import json

    coco = json.load(open(os.path.join(dataset, "annotations.json"), encoding="utf-8"))
    cats = [c["id"] for c in coco["categories"]]
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    out = []
    files = [os.path.join(dataset, "images", f) for f in sorted(ids)]
    for r in model.predict(source=files, imgsz=imgsz, conf=0.001, max_det=100, verbose=False, stream=True,
                           device="cpu"):
        for (x0, y0, x1, y1), k, score in zip(r.boxes.xyxy.tolist(), r.boxes.cls.tolist(), r.boxes.conf.tolist()):
            out.append({"image_id": ids[os.path.basename(r.path)], "category_id": cats[int(k)],
                        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                        "score": round(score, 5)})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return path


def close_the_loop(a, model, data: str, common: list) -> int:
    """Train -> evaluate on held-out images -> simgen focus -> fine-tune on focused images, and
    the control: fine-tune on as many unfocused images, same epochs -> both evaluated on the
    held-out images, which no model trained on."""
    import yaml

    from simgen.config import compose
    from simgen.evaluate import evaluate
    from simgen.focus import focus
    from simgen.runner import run

    n = a.loop_images or max(10, a.images // 2)
    epochs = a.loop_epochs or max(1, a.epochs // 2)
    out = os.path.abspath(a.out)
    last = os.path.join(out, "train", "weights", "last.pt")

    def make(name: str, seed: int, extra: list, splits=("splits.train=0.85", "splits.val=0.15")) -> str:
        folder = os.path.join(out, name)
        print(f"simgen: {run(compose([f'num_images={n}', f'output_dir={folder}', f'seed={seed}', *splits] + common + extra)).line()}")
        return folder

    held = make("heldout", 7001, [], ("splits.train=1.0", "splits.val=0.0"))

    def scored(m, tag: str) -> dict:
        res = evaluate(os.path.join(held, "annotations.json"),
                       predictions(m, held, a.imgsz, os.path.join(out, f"predictions-{tag}.json")))
        from simgen.evaluate import write

        write(res, os.path.join(out, f"evaluate-{tag}"), held)
        return res

    before = scored(model, "before")
    text, changes = focus(before)
    focus_file = os.path.join(out, "focus.yaml")
    with open(focus_file, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    sets = {"focus": make("focused", 7002, [f"focus={focus_file}"]), "control": make("unfocused", 7002, [])}
    base = yaml.safe_load(open(data, encoding="utf-8"))
    root = os.path.dirname(os.path.abspath(data))
    from ultralytics import YOLO

    after = {}
    for tag, folder in sets.items():
        y = os.path.join(out, f"finetune-{tag}.yaml")
        with open(y, "w", encoding="utf-8") as f:
            yaml.safe_dump({"train": [os.path.join(root, base["train"]), os.path.join(folder, "yolo", "images", "train")],
                            "val": os.path.join(root, base["val"]), "names": base["names"]}, f)
        m = YOLO(last)
        m.train(data=y, epochs=epochs, imgsz=a.imgsz, batch=a.batch, workers=0, device="cpu", project=out,
                name=f"finetune-{tag}", exist_ok=True, plots=False, amp=False, val=False, seed=0,
                **short_run_recipe(epochs, a.batch))
        after[tag] = scored(m, tag)
    print(f"\nheld-out set: {before['images']} images, {before['instances']} objects; fine-tuned {epochs} epochs on "
          f"the training images + {n} new ones (focused, or the control: unfocused)")
    print(f"{'':34s} {'before':>8s} {'control':>8s} {'focused':>8s}")
    for key, label in (("map50", "COCO mAP50"), ("map", "COCO mAP50-95")):
        print(f"{label:34s} {before['coco'][key]:8.3f} {after['control']['coco'][key]:8.3f} "
              f"{after['focus']['coco'][key]:8.3f}")
    print(f"{'recall (IoU 0.5)':34s} {before['recall']:8.3f} {after['control']['recall']:8.3f} "
          f"{after['focus']['recall']:8.3f}")

    def recall(res, name, value):
        rows = [s for s in res["slices"].get(name, []) if s["value"] == value]
        return rows[0]["recall"] if rows else float("nan")

    up = [("class", c) for c, w in (changes.get("objects.class_weights") or {}).items()]
    up += [("condition", k.split(".", 1)[1]) for k in changes if k.startswith("edge_cases.")]
    for name, value in sorted(up, key=lambda s: recall(before, *s))[:12]:
        print(f"{name + '=' + str(value):34s} {recall(before, name, value):8.3f} "
              f"{recall(after['control'], name, value):8.3f} {recall(after['focus'], name, value):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
