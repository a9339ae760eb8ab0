"""The CLI as a user runs it: the dataset contract, determinism, resume, and bad input."""
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, SIMGEN, run_cli

from simgen.io import read_png

pytestmark = pytest.mark.slow

BASE = ["num_images=6", "seed=5", "camera.width=320", "camera.height=240", "objects.count=[3,8]",
        "progress=false"]


def _files(d):
    out = []
    for sub in ("images", "masks", "depth"):
        out += [f"{sub}/{f}" for f in sorted(os.listdir(os.path.join(d, sub)))]
    return out + ["annotations.json"]


def assert_same_dataset(a, b):
    fa, fb = _files(a), _files(b)
    assert fa == fb
    _, mismatch, errors = filecmp.cmpfiles(a, b, fa, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "data")
    r = run_cli(*BASE, f"output_dir={out}", "workers=1")
    assert r.returncode == 0, r.stderr
    assert f"dataset written to {out}" in r.stdout and "images/s" in r.stdout
    return out


def test_dataset_contract(reference):
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO

    coco = COCO(os.path.join(reference, "annotations.json"))
    assert len(coco.imgs) == 6 and len(coco.anns) > 6
    for img in coco.imgs.values():
        inst = read_png(os.path.join(reference, img["mask_file"])).astype(np.int64)
        depth = read_png(os.path.join(reference, img["depth_file"]))
        rgb = read_png(os.path.join(reference, "images", img["file_name"]))
        assert inst.dtype == np.int64 and depth.dtype == np.uint16 and rgb.shape == (240, 320, 3)
        assert np.asarray(img["K"]).shape == (3, 3) and np.asarray(img["cam_pose"]).shape == (4, 4)
        anns = coco.imgToAnns[img["id"]]
        ids = [a["instance_id"] for a in anns]
        assert len(set(ids)) == len(ids)
        # Every mask pixel is background or exactly one annotated object.
        assert set(np.unique(inst).tolist()) - {0} == set(ids)
        # Masks agree with depth: every object pixel has a surface.
        assert (depth[inst > 0] > 0).all()
        for a in anns:
            m = coco.annToMask(a).astype(bool)
            assert (m == (inst == a["instance_id"])).all()  # RLE round trip == PNG region
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert a["area"] == m.sum() == mask_util.area(a["segmentation"])
            assert 0 < a["visibility"] <= 1 and a["iscrowd"] == 0
            R = np.asarray(a["pose"]["R_m2c"])
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-5)


def test_cocoeval_of_ground_truth_is_perfect(reference):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(os.path.join(reference, "annotations.json"))
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "segmentation": a["segmentation"], "score": 1.0} for a in gt.anns.values()]
    for iou in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(dets), iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0), iou  # AP@[.5:.95]


def test_filtered_objects_are_ignored_by_cocoeval(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = str(tmp_path / "f")
    crowded = [a for a in BASE if not a.startswith("objects.count")] + ["objects.count=[12,16]"]  # occluded ones
    r = run_cli(*crowded, f"output_dir={out}", "annotate.min_visibility=0.7", "scene=bin", "num_images=3")
    assert r.returncode == 0, r.stderr
    gt = COCO(os.path.join(out, "annotations.json"))
    anns = list(gt.anns.values())
    ignored = [a for a in anns if a["ignore"]]
    assert ignored and all(a["iscrowd"] == 1 and a["visibility"] < 0.7 for a in ignored)
    assert all(a["visibility"] >= 0.7 for a in anns if not a["ignore"])
    for a in anns:
        assert a["difficulty"] in ("easy", "moderate", "hard", "beyond_hard") and 0 <= a["truncation"] < 1
        ax, ay, aw, ah = a["amodal_bbox"]
        x, y, w, h = a["bbox"]
        assert ax <= x and ay <= y and ax + aw >= x + w and ay + ah >= y + h  # amodal contains visible
    # Detections for the kept objects only: the ignored ones cost nothing.
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in anns if not a["ignore"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_two_workers_give_identical_bytes(reference, tmp_path):
    out = str(tmp_path / "w2")
    r = run_cli(*BASE, f"output_dir={out}", "workers=2")
    assert r.returncode == 0, r.stderr
    assert_same_dataset(reference, out)


def test_rerun_is_a_no_op_and_other_config_is_refused(reference, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(reference, out)
    r = run_cli(*BASE, f"output_dir={out}")
    assert r.returncode == 0 and "6 kept" in r.stdout
    assert_same_dataset(reference, out)
    r = run_cli(*BASE, f"output_dir={out}", "seed=6")
    assert r.returncode != 0
    assert "different config" in r.stderr and "seed" in r.stderr and "overwrite=true" in r.stderr
    assert_same_dataset(reference, out)  # untouched
    r = run_cli(*BASE, f"output_dir={out}", "seed=6", "overwrite=true")
    assert r.returncode == 0, r.stderr
    a = json.load(open(os.path.join(out, "annotations.json")))
    assert a["info"]["seed"] == 6


def test_non_empty_foreign_folder_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = run_cli(*BASE, f"output_dir={out}")
    assert r.returncode != 0 and "not empty" in r.stderr
    assert not (out / "annotations.json").exists() and (out / "notes.txt").exists()


def test_resume_after_kill_is_byte_identical(reference, tmp_path):
    out = str(tmp_path / "killed")
    proc = subprocess.Popen([SIMGEN, *BASE, f"output_dir={out}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = os.path.join(out, ".simgen", "parts")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(parts) and len(os.listdir(parts)) >= 2:
            break
        time.sleep(0.02)
    psutil = pytest.importorskip("psutil")
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "annotations.json")), "run finished before the kill"
    _, alive = psutil.wait_procs(workers, timeout=15)  # orphaned workers notice and end
    assert not alive, [p.cmdline() for p in alive]
    r = run_cli(*BASE, f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    assert "kept from an earlier run" in r.stdout
    assert_same_dataset(reference, out)
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp-")]
    assert not leftovers


def test_bad_scene_files_and_sweep_jobs_are_one_line_errors(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)) * 2)
    typo = tmp_path / "typo.yaml"
    typo.write_text("# @package _global_\nobjects:\n  cuont: 4\n")
    out = str(tmp_path / "o")
    _assert_clean_failure(run_cli(f"scene={binary}", f"output_dir={out}"), out, "is not a text file")
    _assert_clean_failure(run_cli(f"scene={typo}", f"output_dir={out}"), out,
                          "unknown config key 'objects.cuont' in scene file 'typo'")
    for jobs in ("0", "-2", "x"):
        _assert_clean_failure(run_cli("-m", "--jobs", jobs, "seed=1,2", f"output_dir={out}"), out,
                              "--jobs takes a whole number >= 1")
    assert not os.path.exists(out)


def _assert_clean_failure(r, out, needle):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simgen: error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not os.path.exists(os.path.join(out, "annotations.json"))


@pytest.mark.parametrize("override,needle", [
    ("num_images=-3", "num_images"),
    ("num_images=many", "num_images"),
    ("scene=moon", "unknown scene 'moon'"),
    ("camera.widht=640", "unknown config key 'camera.widht'"),
    ("camera.width=0", "camera.width"),
    ("engine=spark", "engine must be local or ray"),
    ("shards.index=3", "shards.index must be between 0 and"),
    ("workers=0", "workers must be >= 1"),
    ("objects.spread_tries=0", "objects.spread_tries must be >= 1"),
])
def test_bad_config_values(tmp_path, override, needle):
    out = str(tmp_path / "o")
    _assert_clean_failure(run_cli(f"output_dir={out}", override), out, needle)
    assert not os.path.exists(out)


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = str(blocker / "data")
    _assert_clean_failure(run_cli(*BASE, f"output_dir={out}"), out, "cannot write to output_dir")


@pytest.mark.parametrize("content,needle", [(None, "is missing"), (b"\x00\xffgarbage\x13" * 50, "corrupt")])
def test_missing_or_corrupt_mesh(tmp_path, content, needle):
    mesh = tmp_path / "thing.obj"
    if content is not None:
        mesh.write_bytes(content)
    manifest = tmp_path / "mine.yaml"
    manifest.write_text("name: mine\nassets:\n  - {name: thing, mesh: thing.obj, scale: 0.1}\n")
    out = str(tmp_path / "o")
    r = run_cli(*BASE, f"output_dir={out}", f"objects.asset_sets=[primitives,{manifest}]")
    _assert_clean_failure(r, out, needle)
    assert "thing.obj" in r.stderr
    assert not os.path.exists(out)


def test_egl_unavailable(tmp_path):
    out = str(tmp_path / "o")
    r = run_cli(*BASE, f"output_dir={out}", env={"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent.json"})
    _assert_clean_failure(r, out, "apt-get install libegl1")
    assert not os.path.exists(out)


def test_help_and_cfg():
    r = run_cli("--help")
    assert r.returncode == 0 and "usage: simgen" in r.stdout
    r = run_cli("--cfg", "num_images=9")
    assert r.returncode == 0 and "num_images: 9" in r.stdout


def test_configs_work_from_a_built_wheel(tmp_path):
    """Build a wheel, install it outside the checkout (no editable finder), and run it."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(wheels), ROOT], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    site = tmp_path / "site"
    (whl,) = wheels.glob("simgen-*.whl")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(site), str(whl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=str(site))
    code = ("import simgen, sys; from simgen.cli import main; "
            "assert simgen.__file__.startswith(sys.argv[1]), simgen.__file__; "
            "sys.exit(main(sys.argv[2:]))")
    out = tmp_path / "o"
    # (normals and the label kinds: the shipped shaders and simgen.labels)
    r = subprocess.run([sys.executable, "-c", code, str(site), "num_images=2", "camera.width=64",
                        "camera.height=48", f"output_dir={out}", "progress=false", "render.write_normals=true",
                        "annotate.labels=[occluders,obb,box3d,keypoints]"],
                       capture_output=True, text=True, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    assert (out / "annotations.json").exists() and len(list((out / "normals").glob("*.png"))) == 2


def test_edge_cases_are_recorded_and_deterministic(tmp_path):
    args = [*BASE, "num_images=4", "edge_cases=[harsh,night]", "edge_cases.lens_distortion={p:1.0}"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert run_cli(*args, f"output_dir={a}", "workers=1").returncode == 0
    r = run_cli(*args, f"output_dir={b}", "workers=2")
    assert r.returncode == 0, r.stderr
    assert_same_dataset(a, b)
    doc = json.load(open(os.path.join(a, "annotations.json")))
    for img in doc["images"]:
        cond = img["conditions"]
        assert {"hard_shadows", "low_light", "sensor_noise", "lens_distortion"} <= set(cond)
        assert img["dist_coeffs"][0] == cond["lens_distortion"]["k1"]


def test_sweep_makes_one_dataset_per_combination(tmp_path):
    base = str(tmp_path / "sweep")
    small = ["num_images=2", "camera.width=160", "camera.height=120", "objects.count=[2,4]"]
    r = run_cli("-m", "--jobs", "2", "scene=tabletop,bin", "seed=1,2", *small, f"output_dir={base}")
    assert r.returncode == 0, r.stderr
    manifest = json.load(open(os.path.join(base, "sweep.json")))
    assert sorted(m["folder"] for m in manifest) == sorted(
        f"scene={s},seed={k}" for s in ("tabletop", "bin") for k in (1, 2))
    # each combination is exactly the single run with those overrides
    single = str(tmp_path / "single")
    assert run_cli("scene=bin", "seed=2", *small, "progress=false", f"output_dir={single}").returncode == 0
    assert_same_dataset(os.path.join(base, "scene=bin,seed=2"), single)
    r = run_cli("seed=1,2", f"output_dir={tmp_path / 'x'}")
    assert r.returncode != 0 and "-m" in r.stderr


def test_importing_simgen_leaves_the_environment_alone_and_still_renders_over_egl(tmp_path):
    code = ("import os, simgen\n"
            "assert 'PYOPENGL_PLATFORM' not in os.environ, 'import set it'\n"
            "from simgen import compose, run\n"
            f"run(compose(['num_images=2', 'workers=1', 'progress=false', 'camera.width=64', 'camera.height=48', "
            f"'output_dir={tmp_path / 'd'}']))\n"
            "assert 'PYOPENGL_PLATFORM' not in os.environ, 'run left it set'\n"
            "from simgen.render import _pyrender\n"
            "import OpenGL.platform\n"
            "print(type(OpenGL.platform.PLATFORM).__name__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "EGL" in r.stdout
    assert os.path.isfile(tmp_path / "d" / "annotations.json")
