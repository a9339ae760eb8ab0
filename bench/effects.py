"""Per edge case: the cost of the effect in ms per 640x480 image and a 4x4 contact sheet
with boxes and mask outlines drawn (docs/edge_<name>.png). Run by `make bench`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main() -> int:
    import cv2

    from simgen import effects
    from simgen.config import compose
    from simgen.draw import draw_labels, grid
    from simgen.pipeline import Pipeline

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--docs", default="docs")
    a = ap.parse_args()
    os.makedirs(a.docs, exist_ok=True)
    base = Pipeline(compose(["objects.count=[4,10]"]))
    frames = []
    for i in range(a.images):  # the undisturbed renders every image-stage effect is timed on
        s = base.make(i)
        frames.append((s.scene, s.frame))
    results = {}
    for name in effects.ORDER:
        cond = effects.REGISTRY[name]
        pipe = Pipeline(compose(["objects.count=[4,10]", f"edge_cases.{name}={{p:1.0}}"]))
        tiles, cost = [], []
        for i in range(a.images):
            fired = effects.sample(pipe.cfg, 0, i)
            t0 = time.perf_counter()
            if cond.stage == "image":
                effects.apply_image(fired, frames[i][1], frames[i][0])
            else:
                effects.apply_scene(fired, frames[i][0], pipe)
            cost.append(time.perf_counter() - t0)
            s = pipe.make(i)
            anns = [{"instance_id": x.instance_id, "category": x.category, "bbox": x.bbox,
                     "visibility": x.visibility, "amodal_bbox": x.amodal_bbox, "ignore": x.ignore}
                    for x in s.annotations]
            tiles.append(draw_labels(s.frame.rgb, s.frame.instance, anns, amodal=True))
        pipe.close()
        sheet = grid(tiles, 4)
        cv2.imwrite(os.path.join(a.docs, f"edge_{name}.png"), sheet[..., ::-1])
        ms = float(np.median(cost)) * 1000
        results[name] = {"stage": cond.stage, "ms_per_image": round(ms, 3)}
        print(f"{name:16s} {cond.stage:5s} {ms:8.3f} ms/image (median, the effect alone)", flush=True)
    base.close()
    os.makedirs("out", exist_ok=True)
    with open("out/bench_effects.json", "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
