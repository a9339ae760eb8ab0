"""Transfer benchmark: how well does a detector trained only on simgen images do on images
of the same objects made by a different renderer (Blender Cycles), compared with the same
detector trained on that renderer's own images at equal training compute?

    .venv/bin/python bench/transfer/run.py [--smoke] [--ablate lights ...] [simgen overrides ...]

Steps (each cached: a rerun reuses what exists with the same settings):
  1. target sets (bench/transfer/target.py in the bpy virtualenv): `test` (the transfer
     target, seed 1000) and `train` (the in-domain reference's training images, seed 2000);
  2. simgen: N training images with the default config + bench/transfer/objects.yaml as the
     only asset set + any overrides given on the command line, and a small simgen val set;
  3. YOLOv8n from yolov8n.yaml (no pretrained weights) trained on the N simgen images and,
     separately, on N target-train images: same epochs, imgsz, batch, seed (equal compute);
  4. both evaluated (their last epoch, no model selection) on the target test set, and the
     simgen model also on simgen val;
  5. a table: per class mAP50 and mAP50-95, overall figures, simgen/in-domain ratio, image
     counts, epochs, imgsz and wall times; also written to <work>/results*.json.
--ablate F (repeatable) trains one more simgen model per factor with that factor switched
off (ABLATIONS below) and prints the mAP drop against the full simgen model.

Needs the test/example tools in .venv (Ultralytics, torchvision; see examples/train_yolo.py)
and the bpy virtualenv (bench/transfer/requirements-bpy.txt; --bpy-python).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OBJECTS = os.path.join(HERE, "objects.yaml")
TEST_SEED, TRAIN_SEED = 1000, 2000  # the target sets' seeds: part of their identity (with target.VERSION)
SIM_SEED, SIM_VAL_SEED = 0, 1

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# Factor -> simgen overrides that switch its randomization off (pinned at a typical value).
ABLATIONS = {
    "lights": ["lights.count=1", "lights.types=[directional]", "lights.temperature_k=6000",
               "lights.directional_intensity=1.2", "lights.elevation_deg=60", "lights.ambient=0.2"],
    "shadows": ["render.shadows=false"],
    "colors": ["materials.hue=0.0", "materials.saturation=0.0", "materials.value=0.7"],  # untextured mug, lego
    "finish": ["materials.roughness=0.6", "materials.metallic=0.0"],
    "floor": ["floor.value=0.5", "floor.saturation=0.0"],
    "background": ["background.value=0.5", "background.saturation=0.0"],
    "camera": ["camera.object_share=null", "camera.distance=1.2", "camera.elevation_deg=50", "camera.fov_deg=50"],
    "scale": ["objects.scale=1.0"],
    "count": ["objects.count=8"],
    "textures": ["floor.texture=none", "background.kind=solid"],
    "near": ["camera.object_share=null", "camera.distance=[0.9,1.5]", "camera.elevation_deg=[30,70]", "camera.look_at_jitter=0.05"],
    "distractors": ["distractors.count=0"],
    "effects": ["edge_cases=none"],
}
# The opposite direction: extra randomization that simgen has but does not switch on by default.
VARIANTS = {
    "effects": ["edge_cases=mixed"],
    "randomized": ["preset=randomized"],
    "realistic": ["preset=realistic"],
    "coverage": ["preset=coverage"],
}


def log(msg):
    print(f"[transfer {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def class_names():
    import yaml

    return sorted({a["category"] for a in yaml.safe_load(open(OBJECTS))["assets"]})


def pybullet_data_path():
    import pybullet_data

    return pybullet_data.getDataPath()


# ----------------------------------------------------------------------------- target sets

def make_targets(a, work):
    """Render (or reuse) the target test and train sets, in parallel processes."""
    jobs = []
    todo = [("test", TEST_SEED, a.n_test)] + ([] if a.skip_indomain else [("train", TRAIN_SEED, a.n_train)])
    for split, seed, n in todo:
        out = os.path.join(work, "target", split)
        threads = 1 if len(todo) > 1 else 2
        cmd = [a.bpy_python, os.path.join(HERE, "target.py"), "--out", out, "--count", str(n), "--seed", str(seed),
               "--samples", str(a.samples), "--width", str(a.width), "--height", str(a.height),
               "--threads", str(threads), "--pybullet-data", pybullet_data_path()]
        os.makedirs(os.path.join(work, "logs"), exist_ok=True)
        logf = open(os.path.join(work, "logs", f"target_{split}.log"), "a")
        log(f"target {split}: {n} images, seed {seed} -> {out} (log: {logf.name})")
        jobs.append((split, out, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT), time.time()))
    res = {}
    for split, out, p, t0 in jobs:
        if p.wait() != 0:
            sys.exit(f"target.py failed for {split} (see {os.path.join(work, 'logs', f'target_{split}.log')})")
        info = json.load(open(os.path.join(out, "info.json")))
        # the image list of exactly this count (the folder may hold more: a larger earlier run)
        coco = json.load(open(os.path.join(out, "annotations.json")))
        lst = os.path.join(out, f"images-{len(coco['images'])}.txt")
        with open(lst, "w") as f:
            f.writelines(os.path.join(out, im["file_name"]) + "\n" for im in coco["images"])
        res[split] = dict(dir=out, list=lst, images=info["images"], instances=info["instances"], seed=info["seed"],
                          version=info["version"], samples=info["samples"],
                          seconds_per_image=info["mean_seconds_per_image"], wall_s=round(time.time() - t0, 1))
        log(f"target {split}: {info['images']} images, {info['instances']} instances, "
            f"{info['mean_seconds_per_image']} s/image (version {info['version']})")
    return res


# ----------------------------------------------------------------------------- simgen

def simgen_version():
    """simgen's commit (+ '-dirty' when simgen/, configs/ or assets/ have uncommitted changes)."""
    try:
        env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only: git status must not refresh the index
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, env=env).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "simgen", "configs", "assets",
                                "scenes"], capture_output=True, text=True, env=env).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except Exception:
        import simgen

        return f"simgen {getattr(simgen, '__version__', '?')}"


def simgen_set(a, work, n, seed, overrides, tag):
    """Generate (or reuse) a simgen set. Folder: a hash of the overrides; it is reused when it is
    complete and was made by the same simgen version (bench-simgen.json), else remade."""
    base = [f"num_images={n}", f"seed={seed}", "formats=[coco,yolo]", f"camera.width={a.width}",
            f"camera.height={a.height}", f"objects.asset_sets=[{OBJECTS}]", "progress=false"]
    ov = base + list(overrides)
    key = hashlib.sha1(json.dumps(ov).encode()).hexdigest()[:8]
    out = os.path.join(work, "simgen", f"{tag}-{key}")
    marker = os.path.join(out, "bench-simgen.json")
    version = simgen_version()
    log(f"simgen {tag}: {' '.join(ov[len(base):]) or '(defaults)'} -> {out}")
    t0 = time.time()
    old = json.load(open(marker)) if os.path.isfile(marker) else {}
    complete = os.path.isfile(os.path.join(out, "annotations.json"))
    if complete and (old.get("simgen") == version or getattr(a, "reuse_simgen", False)):
        log(f"simgen {tag}: reusing (made by simgen {old.get('simgen', '?')})")
    else:
        simgen = os.path.join(os.path.dirname(sys.executable), "simgen")
        cmd = [simgen, *ov, f"output_dir={out}"] + (["overwrite=true"] if os.path.exists(out) else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"simgen failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        line = [x for x in (r.stdout + r.stderr).splitlines() if " images (" in x]
        log(f"{line[-1] if line else 'simgen: done'}")
        for root, _, files in os.walk(os.path.join(out, "yolo")):  # stale Ultralytics label caches
            for f in files:
                if f.endswith(".cache"):
                    os.remove(os.path.join(root, f))
        old = dict(simgen=version, overrides=ov, made=time.strftime("%Y-%m-%d %H:%M:%S"))
        json.dump(old, open(marker, "w"), indent=1)
    summary = json.load(open(os.path.join(out, "run_summary.json")))
    coco = json.load(open(os.path.join(out, "annotations.json")))
    made = summary.get("made_this_run", 0)
    return dict(dir=out, images=len(coco["images"]), instances=len(coco["annotations"]), overrides=list(overrides),
                simgen=old.get("simgen"), seconds_per_image=round(summary["seconds"] / made, 3) if made else None,
                wall_s=round(time.time() - t0, 1))


def data_fingerprint(data_yaml):
    """Hash of a training set's images (names, sizes) and labels: a trained model is reused only
    for exactly the data it was trained on."""
    import yaml

    train_entry = yaml.safe_load(open(data_yaml))["train"]
    if train_entry.endswith(".txt"):
        images = [x.strip() for x in open(train_entry) if x.strip()]
    else:
        images = [os.path.join(train_entry, f) for f in sorted(os.listdir(train_entry))]
    h = hashlib.sha1()
    for im in images:
        lab = os.path.splitext(im.replace(f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"))[0] + ".txt"
        h.update(f"{os.path.basename(im)} {os.path.getsize(im)}\n".encode())
        h.update(open(lab, "rb").read() if os.path.isfile(lab) else b"-")
    return h.hexdigest()[:16]


def yolo_yaml(path, train_dir, val_dir):
    names = class_names()
    with open(path, "w") as f:
        f.write(f"train: {train_dir}\nval: {val_dir}\nnc: {len(names)}\nnames:\n")
        for i, n in enumerate(names):
            f.write(f"  {i}: {n}\n")
    return path


# ----------------------------------------------------------------------------- YOLO

def _ultralytics():
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import tv_cpu_shim

    tv_cpu_shim.install()
    from ultralytics import YOLO

    return YOLO


def train(a, work, name, data_yaml):
    """YOLOv8n from scratch; returns the path of its last-epoch weights (no selection on val)."""
    YOLO = _ultralytics()
    project = os.path.join(work, "runs")
    last = os.path.join(project, name, "weights", "last.pt")
    meta = os.path.join(project, name, "bench.json")
    # the example's short-run recipe: nbs=batch (no gradient accumulation), mosaic for the first
    # 80% of the epochs
    from train_yolo import short_run_recipe

    extra = short_run_recipe(a.epochs, a.batch)
    data = "".join(x for x in open(data_yaml) if not x.startswith("val:"))  # val: not used to train (val=False)
    want = dict(data=data, fingerprint=data_fingerprint(data_yaml), epochs=a.epochs, imgsz=a.imgsz, batch=a.batch,
                **extra)
    if os.path.isfile(last) and os.path.isfile(meta) and json.load(open(meta)).get("want") == want:
        log(f"train {name}: reusing {last}")
        return last, json.load(open(meta))["wall_s"]
    log(f"train {name}: YOLOv8n from scratch, {a.epochs} epochs, imgsz {a.imgsz}, batch {a.batch}")
    t0 = time.time()
    model = YOLO("yolov8n.yaml")
    model.train(data=data_yaml, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, workers=a.workers, device="cpu",
                project=project, name=name, exist_ok=True, plots=False, amp=False, pretrained=False, val=False,
                seed=0, deterministic=True, verbose=False, **extra)
    wall = round(time.time() - t0, 1)
    json.dump(dict(want=want, wall_s=wall), open(meta, "w"))
    log(f"train {name}: {wall} s")
    return last, wall


def evaluate(a, weights, data_yaml):
    YOLO = _ultralytics()
    t0 = time.time()
    m = YOLO(weights).val(data=data_yaml, split="val", imgsz=a.imgsz, batch=a.batch, workers=a.workers,
                          device="cpu", plots=False, verbose=False, save_json=False)
    names = class_names()
    per = {n: dict(map50=0.0, map=0.0, present=False) for n in names}
    for j, c in enumerate(m.box.ap_class_index):
        _, _, ap50, ap = m.box.class_result(j)
        per[names[int(c)]] = dict(map50=round(float(ap50), 4), map=round(float(ap), 4), present=True)
    return dict(map50=round(float(m.box.map50), 4), map=round(float(m.box.map), 4), per_class=per,
                eval_s=round(time.time() - t0, 1))


# ----------------------------------------------------------------------------- report

def ratio(x, y):
    return round(x / y, 3) if y > 0 else None


def table(res):
    names = class_names()
    sim, ind = res["simgen_on_target"], res["indomain_on_target"]
    lines = [f"Transfer benchmark (target v{res['target']['test']['version']}: Blender Cycles, "
             f"{res['target']['test']['images']} test images, seed {res['target']['test']['seed']})",
             f"{'class':<12} {'sim mAP50':>10} {'ind mAP50':>10} {'ratio':>6} {'sim 50-95':>10} {'ind 50-95':>10} {'ratio':>6}"]
    for n in names + ["all"]:
        s = sim if n == "all" else sim["per_class"][n]
        i = ind if n == "all" else ind["per_class"][n]
        r50, r = ratio(s["map50"], i["map50"]), ratio(s["map"], i["map"])
        lines.append(f"{n:<12} {s['map50']:>10.3f} {i['map50']:>10.3f} {r50 if r50 is not None else '-':>6} "
                     f"{s['map']:>10.3f} {i['map']:>10.3f} {r if r is not None else '-':>6}")
    sv = res.get("simgen_on_simgen_val")
    if sv:
        lines.append(f"simgen model on simgen val ({res['simgen_val']['images']} images): mAP50 {sv['map50']:.3f}, "
                     f"mAP50-95 {sv['map']:.3f}  (sim-to-sim; the gap to the target figure is the domain gap)")
    t = res["training"]
    lines.append(f"ratio simgen/in-domain: mAP50 {res['ratio']['map50']}, mAP50-95 {res['ratio']['map']}")
    lines.append(f"training: simgen {res['simgen']['images']} images vs in-domain {res['target']['train']['images']} "
                 f"images; {t['epochs']} epochs, imgsz {t['imgsz']}, batch {t['batch']}, YOLOv8n from scratch")
    lines.append(f"wall: simgen {res['simgen']['wall_s']} s ({res['simgen']['seconds_per_image']} s/image), "
                 f"bpy test {res['target']['test']['seconds_per_image']} s/image, bpy train "
                 f"{res['target']['train']['seconds_per_image']} s/image, train simgen {t['simgen_wall_s']} s, "
                 f"train in-domain {t['indomain_wall_s']} s")
    if res.get("ablations"):
        lines.append("")
        lines.append(f"{'simgen run':<28} {'mAP50':>7} {'drop':>7} {'mAP50-95':>9} {'drop':>7}")
        lines.append(f"{'full (defaults)':<28} {sim['map50']:>7.3f} {'':>7} {sim['map']:>9.3f}")
        for f, r in res["ablations"].items():
            e = r["on_target"]
            lines.append(f"{f:<28} {e['map50']:>7.3f} {e['map50'] - sim['map50']:>+7.3f} {e['map']:>9.3f} "
                         f"{e['map'] - sim['map']:>+7.3f}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="extra simgen (Hydra) overrides for the simgen training set")
    ap.add_argument("--work", default=os.path.join(ROOT, "out", "transfer"))
    local = os.path.join(ROOT, ".venv-bpy", "bin", "python")
    ap.add_argument("--bpy-python", default=os.environ.get("BPY_PYTHON") or (local if os.path.exists(local) else
                    "/tmp/bpy-venv/bin/python"), help="python of the bpy virtualenv (requirements-bpy.txt)")
    ap.add_argument("--n-sim", type=int, default=300, help="simgen training images")
    ap.add_argument("--n-sim-val", type=int, default=60)
    ap.add_argument("--sim-seed", type=int, default=SIM_SEED,
                    help="seed of the simgen training set (val uses seed+1): another seed measures the run-to-run spread")
    ap.add_argument("--n-train", type=int, default=300, help="target-domain training images (in-domain reference)")
    ap.add_argument("--n-test", type=int, default=100, help="target test images")
    ap.add_argument("--samples", type=int, default=8, help="Cycles samples (denoised)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=4, help="also the nominal batch (no accumulation)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--ablate", action="append", default=[], metavar="FACTOR",
                    help=f"switch a factor off: {', '.join(ABLATIONS)}; or add one: {', '.join('+' + v for v in VARIANTS)}")
    ap.add_argument("--skip-indomain", action="store_true", help="no target train set, no in-domain model (simgen side only; a later full run reuses it)")
    ap.add_argument("--reuse-simgen", action="store_true", help="reuse complete simgen sets made by another simgen version")
    ap.add_argument("--smoke", action="store_true", help="tiny run to check the plumbing (minutes)")
    a = ap.parse_args()
    if a.smoke:
        a.n_sim, a.n_sim_val, a.n_train, a.n_test, a.epochs, a.samples = 24, 16, 24, 16, 2, 4
        a.work = a.work.rstrip("/") + "-smoke"
    for f in a.ablate:
        if f.lstrip("+") not in (VARIANTS if f.startswith("+") else ABLATIONS):
            sys.exit(f"unknown factor '{f}': off: {', '.join(ABLATIONS)}; on: {', '.join('+' + v for v in VARIANTS)}")
    os.makedirs(a.work, exist_ok=True)
    t_all = time.time()
    res = dict(overrides=a.overrides)
    res["target"] = make_targets(a, a.work)
    res["simgen"] = simgen_set(a, a.work, a.n_sim, a.sim_seed, a.overrides, "train")
    res["simgen_val"] = simgen_set(a, a.work, a.n_sim_val, a.sim_seed + SIM_VAL_SEED - SIM_SEED, a.overrides, "val")

    test_dir = res["target"]["test"]["list"]
    dy = os.path.join(a.work, "data")
    os.makedirs(dy, exist_ok=True)
    sim_img = os.path.join(res["simgen"]["dir"], "yolo", "images", "train")
    simval_img = os.path.join(res["simgen_val"]["dir"], "yolo", "images", "train")
    y_sim = yolo_yaml(os.path.join(dy, f"sim-{os.path.basename(res['simgen']['dir'])}.yaml"), sim_img, test_dir)
    y_simval = yolo_yaml(os.path.join(dy, f"simval-{os.path.basename(res['simgen_val']['dir'])}.yaml"), sim_img, simval_img)

    w_sim, t_sim = train(a, a.work, f"sim-{os.path.basename(res['simgen']['dir'])}", y_sim)
    res["simgen_on_target"] = evaluate(a, w_sim, y_sim)
    res["simgen_on_simgen_val"] = evaluate(a, w_sim, y_simval)
    t_ind = None
    if not a.skip_indomain:
        y_ind = yolo_yaml(os.path.join(dy, "indomain.yaml"), res["target"]["train"]["list"], test_dir)
        w_ind, t_ind = train(a, a.work, "indomain", y_ind)
        res["indomain_on_target"] = evaluate(a, w_ind, y_ind)
    res["training"] = dict(epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, simgen_wall_s=t_sim, indomain_wall_s=t_ind,
                           model="yolov8n.yaml (from scratch)")
    res["ratio"] = dict(map50=ratio(res["simgen_on_target"]["map50"], res.get("indomain_on_target", {}).get("map50", 0)),
                        map=ratio(res["simgen_on_target"]["map"], res.get("indomain_on_target", {}).get("map", 0)))
    res["ablations"] = {}
    for f in a.ablate:
        extra = VARIANTS[f[1:]] if f.startswith("+") else ABLATIONS[f]
        label = f"+{f[1:]}" if f.startswith("+") else f"no {f}"
        s = simgen_set(a, a.work, a.n_sim, a.sim_seed, list(a.overrides) + extra, "train")
        y = yolo_yaml(os.path.join(dy, f"sim-{os.path.basename(s['dir'])}.yaml"),
                      os.path.join(s["dir"], "yolo", "images", "train"), test_dir)
        w, t = train(a, a.work, f"sim-{os.path.basename(s['dir'])}", y)
        res["ablations"][label] = dict(simgen=s, train_wall_s=t, on_target=evaluate(a, w, y))
    res["sim_seed"] = a.sim_seed
    res["wall_s"] = round(time.time() - t_all, 1)
    if "indomain_on_target" not in res:
        print(json.dumps(res["simgen_on_target"], indent=1))
    else:
        txt = table(res)
        print(txt)
        res["table"] = txt
    ident = [a.overrides, a.ablate] + ([a.sim_seed] if a.sim_seed != SIM_SEED else [])
    tag = hashlib.sha1(json.dumps(ident).encode()).hexdigest()[:8]
    out = os.path.join(a.work, f"results-{tag}.json" if (a.overrides or a.ablate or a.sim_seed != SIM_SEED)
                       else "results.json")
    json.dump(res, open(out, "w"), indent=1)
    log(f"results: {out} (total {res['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
