"""Per optional label kind (annotate.labels), for the semantic map and the normals pass
(render.write_normals): the cost in ms per
640x480 image with 10 objects, measured on the same rendered frames side by side in one
process (median over the images), against the annotation stage without them. Run by
`make bench`."""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> int:
    from omegaconf import OmegaConf

    from simgen.annotate import annotate
    from simgen.config import AnnotateConfig, compose
    from simgen.io import encode_png
    from simgen.labels import KINDS
    from simgen.pipeline import Pipeline

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    pipe = Pipeline(compose(["camera.width=640", "camera.height=480", "objects.count=10",
                             "annotate.labels=[keypoints]"]))  # (the keypoint schema; primitives have keypoints)
    samples = [pipe.make(i) for i in range(a.images)]
    bounds = {o.asset: pipe.model_bounds(o.asset) for s in samples for o in s.scene.objects if o.labeled}
    kps = {o.asset: pipe.asset_keypoints(o) for s in samples for o in s.scene.objects if o.labeled}
    # The normals pass (render.write_normals): the renderer's own timing of it, and its PNG.
    nrm, png = [], []
    for _ in range(a.repeat):
        for s in samples:
            f = pipe.renderer.render(s.scene, pipe.all_assets, normals=True)
            nrm.append(pipe.renderer.last_timings["normals"])
            t0 = time.perf_counter()
            encode_png(f.normals)
            png.append(time.perf_counter() - t0)
    pipe.close()
    variants = {"none": []} | {k: [k] for k in KINDS} | {"all": list(KINDS)}
    cost = {v: [] for v in variants}
    for _ in range(a.repeat):  # interleaved, so a slow moment of the machine hits every variant
        for s in samples:
            dist = (s.image_meta or {}).get("dist_coeffs")
            for v, kinds in variants.items():
                cfg = OmegaConf.structured(AnnotateConfig)
                cfg.labels = kinds
                t0 = time.perf_counter()
                annotate(s.scene, s.frame, cfg, bounds, dist, kps)
                cost[v].append(time.perf_counter() - t0)
    base = float(np.median(cost["none"])) * 1000
    res = {"annotate_ms": round(base, 3), "objects_per_image": float(np.mean([len(s.annotations) for s in samples]))}
    print(f"annotate without optional labels: {base:.2f} ms/image ({res['objects_per_image']:.1f} annotations)")
    for v in variants:
        if v != "none":
            extra = float(np.median(cost[v])) * 1000 - base
            res[v] = round(extra, 3)
            print(f"  + {v:10s} {extra:7.2f} ms/image")
    # The semantic map: the class look-up and its PNG (the exporter also reads the mask PNG back).
    t = []
    for s in samples:
        t0 = time.perf_counter()
        lut = np.zeros(int(s.frame.instance.max()) + 1, np.uint8)
        lut[1:] = 1
        encode_png(lut[s.frame.instance], labels=True)
        t.append(time.perf_counter() - t0)
    res["semantic_png"] = round(float(np.median(t)) * 1000, 3)
    print(f"  semantic map + PNG {res['semantic_png']:.2f} ms/image")
    res["normals_pass"], res["normals_png"] = (round(float(np.median(x)) * 1000, 3) for x in (nrm, png))
    print(f"  normals pass {res['normals_pass']:.2f} ms/image + PNG {res['normals_png']:.2f} ms/image")
    os.makedirs("out", exist_ok=True)
    with open("out/bench_labels.json", "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
