"""The optional label kinds (annotate.labels, simgen.labels) and the semantic format, each
against geometry computed independently: analytic projections, known occlusions, drawn
rectangles, and the ecosystem's own readers."""
import json
import os

import numpy as np
import pytest
import trimesh
from conftest import camera, run_cli, run_ultralytics, scene

from simgen.annotate import annotate, decode_rle
from simgen.geometry import project

KINDS = ["occluders", "obb", "box3d"]


def _cfg(**kw):
    from omegaconf import OmegaConf

    from simgen.config import AnnotateConfig

    cfg = OmegaConf.structured(AnnotateConfig)
    cfg.labels = list(kw.pop("labels", KINDS))
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def _bounds(library, sc):
    return {o.asset: library.visual_mesh(o.asset).bounds for o in sc.objects}


# ---- occlusion order ---------------------------------------------------------------------

def test_occluders_of_the_half_occluded_cube(renderer, library):
    cam = camera([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])  # straight down
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0),  # target
                ("brick", [0.12, 0.0, 0.30], None, 2.0)],  # occluder covering world x > 0
               cam)
    frame = renderer.render(sc, library)
    anns = {a.instance_id: a for a in annotate(sc, frame, _cfg(labels=["occluders"]))}
    (occ_id, px), = anns[1].extra["occluders"]
    assert occ_id == 2 and abs(px / anns[1].unoccluded_area - 0.5) < 0.02  # about half of it
    assert px == anns[1].unoccluded_area - anns[1].area  # every hidden pixel, once
    assert anns[2].extra["occluders"] == []


def test_unlabeled_geometry_occludes_as_id_0(renderer, library):
    cam = camera([0.5, 0.0, 0.08], [0.0, 0.0, 0.0])
    sc = scene([("cube", [0.0, 0.0, 0.0], None, 1.0)], cam)  # half sunk into the floor
    frame = renderer.render(sc, library)
    (ann,) = annotate(sc, frame, _cfg(labels=["occluders"]))
    assert ann.extra["occluders"] == [[0, ann.unoccluded_area - ann.area]] and ann.area < ann.unoccluded_area


def test_dataset_labels_hold_their_invariants(tmp_path):
    """A cluttered bin with distractors and lens distortion: every occluder list sums to the
    hidden pixels and names ids of its own image; every OBB contains its mask; every 3D box
    keypoint agrees with its flags."""
    out = str(tmp_path / "d")
    r = run_cli("num_images=6", "seed=3", "scene=bin", "camera.width=320", "camera.height=240", "progress=false",
                "annotate.labels=[occluders,obb,box3d]", "distractors.count=3",
                "edge_cases.lens_distortion={p:0.5}", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    d = json.load(open(os.path.join(out, "annotations.json")))
    images = {im["id"]: im for im in d["images"]}
    by_image = {}
    for a in d["annotations"]:
        by_image.setdefault(a["image_id"], set()).add(a["instance_id"])
    hidden = 0
    for a in d["annotations"]:
        occ = a["occluders"]
        assert sum(p for _, p in occ) == a["unoccluded_area"] - a["area"]
        assert all(p > 0 for _, p in occ) and [p for _, p in occ] == sorted((p for _, p in occ), reverse=True)
        assert all(i == 0 or i in by_image[a["image_id"]] for i, _ in occ)
        hidden += len(occ)
        m = decode_rle(a["segmentation"])
        vs, us = np.nonzero(m)
        cx, cy, w, h, ang = a["obb"]
        t = np.radians(ang)
        dx, dy = us + 0.5 - cx, vs + 0.5 - cy  # pixel centres
        along, across = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
        assert (np.abs(along) <= w / 2 + 1e-2).all() and (np.abs(across) <= h / 2 + 1e-2).all()
        assert w >= h and 0 <= ang < 180 and w * h <= a["bbox"][2] * a["bbox"][3] + 1e-2
        im = images[a["image_id"]]
        kp = np.array(a["box3d"]["keypoints"])
        inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= im["width"] - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= im["height"] - 0.5)
        flags = np.array(a["box3d"]["in_frame"], bool)
        assert (flags <= inside).all()  # (a corner behind the camera may project anywhere)
    assert hidden > 0 and any("dist_coeffs" in im for im in d["images"])


# ---- oriented boxes ------------------------------------------------------------------------

def _obb(mask):
    from simgen.annotate import mask_to_bbox
    from simgen.labels.obb import mask_obb

    return mask_obb(mask, mask_to_bbox(mask))


def test_obb_of_an_axis_aligned_rectangle_is_its_box():
    m = np.zeros((60, 80), bool)
    m[10:30, 5:55] = True  # 50 x 20 pixels, pixel k spanning [k, k+1]
    (cx, cy, w, h, ang), corners = _obb(m)
    assert (cx, cy, w, h, ang) == pytest.approx((30.0, 20.0, 50.0, 20.0, 0.0), abs=1e-4)
    assert corners == pytest.approx(np.array([[5, 10], [55, 10], [55, 30], [5, 30]]), abs=1e-4)  # clockwise
    (cx, cy, w, h, ang), _ = _obb(m.T.copy())  # tall: the long side points along +y
    assert (w, h, ang) == pytest.approx((50.0, 20.0, 90.0), abs=1e-4)


@pytest.mark.parametrize("deg", [12.0, 37.0, 75.0, 133.0, 168.0])
def test_obb_of_a_drawn_rotated_rectangle(deg):
    t = np.radians(deg)
    d, n = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    c, L, S = np.array([160.0, 120.0]), 150.0, 50.0
    vs, us = np.mgrid[0:240, 0:320]
    dx, dy = us + 0.5 - c[0], vs + 0.5 - c[1]  # pixel centres, pixel k spanning [k, k+1]
    m = (np.abs(dx * d[0] + dy * d[1]) <= L / 2) & (np.abs(dx * n[0] + dy * n[1]) <= S / 2)
    (cx, cy, w, h, ang), corners = _obb(m)
    assert abs((ang - deg + 90) % 180 - 90) < 0.5
    # the pixels whose centres are inside, as squares: each is |cos| + |sin| wide along a side
    slack = abs(np.cos(t)) + abs(np.sin(t))
    assert abs(w - L) <= slack and abs(h - S) <= slack
    assert np.hypot(cx - c[0], cy - c[1]) < 0.5
    # corners clockwise on screen, the first edge the long side
    e = np.roll(corners, -1, axis=0) - corners
    assert np.linalg.norm(e[0]) == pytest.approx(w) and np.cross(e[0], e[1]) > 0


def test_obb_of_a_rendered_brick_follows_its_yaw(renderer, library):
    Rz = trimesh.transformations.rotation_matrix(np.radians(30), [0, 0, 1])[:3, :3]
    cam = camera([0.0, 0.0, 0.6], [0.0, 0.0, 0.0])
    sc = scene([("brick", [0.0, 0.0, 0.02], Rz, 1.0)], cam)
    frame = renderer.render(sc, library)
    (ann,) = annotate(sc, frame, _cfg(labels=["obb"]))
    # The analytic silhouette from straight above: the brick's top face (0.12 x 0.06 m).
    top = trimesh.bounds.corners(np.array([[-0.06, -0.03, 0.02], [0.06, 0.03, 0.02]]))[4:] @ Rz.T + [0, 0, 0.02]
    uv, _ = project(cam.K, cam.pose, top)
    rect = __import__("cv2").minAreaRect((uv + 0.5).astype(np.float32))
    cx, cy, w, h, ang = ann.extra["obb"]
    assert np.hypot(cx - rect[0][0], cy - rect[0][1]) < 0.5
    assert abs(w - max(rect[1])) < 1.5 and abs(h - min(rect[1])) < 1.5
    # image y points down and the camera looks down: world yaw +30 deg is -30 on screen (mod 180)
    look = np.linalg.inv(cam.pose)[:3, :3] @ (Rz @ [1.0, 0, 0])
    expect = np.degrees(np.arctan2(look[1], look[0])) % 180
    assert abs((ang - expect + 90) % 180 - 90) < 1.0


# ---- 3D boxes ------------------------------------------------------------------------------

def test_box3d_corners_are_the_analytic_projection(renderer, library):
    R = trimesh.transformations.euler_matrix(0.3, -0.2, 0.7)[:3, :3]
    cam = camera([0.25, -0.35, 0.45], [0.0, 0.0, 0.035])
    sc = scene([("brick", [0.01, 0.02, 0.05], R, 1.3)], cam)
    frame = renderer.render(sc, library)
    (ann,) = annotate(sc, frame, _cfg(labels=["box3d"]), _bounds(library, sc))
    b = ann.extra["box3d"]
    half = np.array([0.06, 0.03, 0.02]) * 1.3  # the brick primitive's extents / 2, at scale 1.3
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])  # Objectron's order
    world = np.vstack([[0, 0, 0], signs * half]) @ R.T + [0.01, 0.02, 0.05]
    uv, z = project(cam.K, cam.pose, world)
    assert np.abs(np.array(b["keypoints"]) - uv).max() < 0.01  # (< 0.5 px asked; rounding is 1e-3)
    w2c = np.linalg.inv(cam.pose)
    assert np.abs(np.array(b["center"]) - (w2c[:3, :3] @ world[0] + w2c[:3, 3])).max() < 1e-5
    assert np.array(b["size"]) == pytest.approx(2 * half, abs=1e-6)
    assert np.array(b["R"]) == pytest.approx(w2c[:3, :3] @ R, abs=1e-5)
    assert b["in_frame"] == [1] * 9
    # The box holds the rendered silhouette: the visible box lies within the corners' hull box.
    x, y, w, h = ann.bbox
    assert uv[:, 0].min() - 0.5 <= x and x + w <= uv[:, 0].max() + 1.5
    assert uv[:, 1].min() - 0.5 <= y and y + h <= uv[:, 1].max() + 1.5


@pytest.mark.parametrize("asset", ["duck", "mug", "teddy", "cone", "capsule", "lego"])
def test_box3d_contains_every_vertex(library, asset):
    from simgen.labels import Target, View
    from simgen.labels.box3d import box3d

    R = trimesh.transformations.euler_matrix(0.5, 1.1, -0.4)[:3, :3]
    cam = camera([0.3, -0.4, 0.5], [0.0, 0.0, 0.0])
    sc = scene([(asset, [0.02, -0.01, 0.06], R, 0.9)], cam)
    view = View(sc, None, np.linalg.inv(cam.pose), _bounds(library, sc))
    b = box3d(view, Target(sc.objects[0], None, (0, 0, 1, 1), None, (0, 0, 0, 0)))["box3d"]
    o = sc.objects[0]
    v = library.visual_mesh(asset).vertices * o.scale @ np.asarray(o.pose)[:3, :3].T + np.asarray(o.pose)[:3, 3]
    vc = v @ view.w2c[:3, :3].T + view.w2c[:3, 3]
    local = (vc - b["center"]) @ np.array(b["R"])  # into the box's axes
    assert (np.abs(local) <= np.array(b["size"]) / 2 + 1e-5).all()
    assert (np.abs(local).max(axis=0) >= np.array(b["size"]) / 2 - 1e-5).all()  # and is tight


def test_box3d_keypoints_follow_lens_distortion(library):
    import cv2

    from simgen.effects.lens import distortion_map
    from simgen.labels import Target, View
    from simgen.labels.box3d import box3d

    cam = camera([0.3, -0.3, 0.3], [0.0, 0.0, 0.0])
    sc = scene([("cube", [0.12, 0.14, 0.035], None, 1.0)], cam)  # near the frame's corner
    dist = np.array([-0.3, 0.05, 0, 0, 0], float)
    t = Target(sc.objects[0], None, (0, 0, 1, 1), None, (0, 0, 0, 0))
    w2c = np.linalg.inv(cam.pose)
    plain = np.array(box3d(View(sc, None, w2c, _bounds(library, sc)), t)["box3d"]["keypoints"])
    warped = np.array(box3d(View(sc, None, w2c, _bounds(library, sc), dist), t)["box3d"]["keypoints"])
    assert np.abs(warped - plain).max() > 5  # the distortion moves them
    # The distortion map reads each distorted pixel from the undistorted render: at the
    # distorted keypoints it points back at the pinhole projections.
    mx, my = distortion_map(cam.K, dist, cam.width, cam.height)
    back = np.c_[[cv2.getRectSubPix(mx, (1, 1), tuple(p))[0, 0] for p in warped],
                 [cv2.getRectSubPix(my, (1, 1), tuple(p))[0, 0] for p in warped]]
    assert np.abs(back - plain).max() < 0.05


# ---- semantic segmentation -----------------------------------------------------------------

def test_semantic_map_is_the_instance_map_through_the_categories(tmp_path):
    from simgen.io import read_png

    out = str(tmp_path / "d")
    r = run_cli("num_images=5", "seed=2", "camera.width=320", "camera.height=240", "progress=false",
                "formats=[coco,semantic]", "annotate.min_area=40", "annotate.filtered=drop", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    d = json.load(open(os.path.join(out, "annotations.json")))
    classes = json.load(open(os.path.join(out, "semantic", "semantic_classes.json")))
    assert {c["id"]: c["name"] for c in classes["classes"]} == {0: "background", 255: "ignore",
                                                                **{c["id"]: c["name"] for c in d["categories"]}}
    dropped = 0
    for im in d["images"]:
        inst = read_png(os.path.join(out, im["mask_file"]))
        sem = read_png(os.path.join(out, "semantic", im["file_name"]))
        assert sem.dtype == np.uint8 and sem.shape == inst.shape
        covered = np.zeros(inst.shape, bool)
        for a in (a for a in d["annotations"] if a["image_id"] == im["id"]):
            m = decode_rle(a["segmentation"])
            assert (sem[m] == a["category_id"]).all()
            covered |= m
        assert (sem[inst == 0] == 0).all()
        rest = ~covered & (inst != 0)  # objects the filter dropped: no record, so no class
        assert (sem[rest] == 255).all()
        dropped += int(rest.any())
    assert dropped > 0
    # exported again from the same records: the same bytes
    before = {f: open(os.path.join(out, "semantic", f), "rb").read() for f in os.listdir(os.path.join(out, "semantic"))}
    r = run_cli("export", out, "--to", "semantic")
    assert r.returncode == 0, r.stderr
    assert before == {f: open(os.path.join(out, "semantic", f), "rb").read() for f in before}
    assert run_cli("validate", out).returncode == 0
    # a map that disagrees with the mask, or is missing: validate names it
    from simgen.io import encode_png

    im = d["images"][1]
    sem = read_png(os.path.join(out, "semantic", im["file_name"]))
    sem[sem > 0] = 1
    open(os.path.join(out, "semantic", im["file_name"]), "wb").write(encode_png(sem, labels=True))
    os.remove(os.path.join(out, "semantic", d["images"][2]["file_name"]))
    r = run_cli("validate", out)
    msg = r.stdout + r.stderr
    assert r.returncode == 1 and f"semantic/{im['file_name']}: differs" in msg and "missing or unreadable" in msg


def test_semantic_map_is_16_bit_past_254_classes(tmp_path):
    from simgen.io import encode_png, read_png
    from simgen.writers import export
    from simgen.writers.coco import Coco

    os.makedirs(tmp_path / "masks")
    inst = np.zeros((4, 6), np.uint16)
    inst[1:3, 1:3], inst[0, 5] = 7, 9
    (tmp_path / "masks" / "000000.png").write_bytes(encode_png(inst, labels=True))
    cats = [{"id": 1, "name": "a"}, {"id": 300, "name": "b"}]
    img = {"id": 1, "file_name": "000000.png", "width": 6, "height": 4, "mask_file": "masks/000000.png"}
    anns = [{"id": 1, "image_id": 1, "category_id": 300, "instance_id": 7, "bbox": [1, 1, 2, 2]}]
    export(str(tmp_path), Coco({}, cats, lambda: iter([(img, anns)])), ["semantic"], {})
    sem = read_png(str(tmp_path / "semantic" / "000000.png"))
    assert sem.dtype == np.uint16
    assert sem[1, 1] == 300 and sem[0, 5] == 65535 and sem[0, 0] == 0


# ---- Ultralytics reads the oriented boxes --------------------------------------------------

@pytest.mark.slow
@pytest.mark.training
def test_ultralytics_reads_the_obb_labels(tmp_path):
    import importlib.util


    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("ultralytics") is None:
        pytest.skip("needs torch and ultralytics (see examples/train_yolo.py)")
    out = str(tmp_path / "d")
    r = run_cli("num_images=4", "seed=5", "camera.width=320", "camera.height=240", "progress=false",
                "objects.asset_sets=[primitives]", "formats=[coco,yolo]", "yolo.obb=true", "annotate.labels=[obb]",
                f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    code = f"""
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset
ds = YOLODataset(img_path={os.path.join(out, 'yolo', 'images', 'train')!r},
                 data=check_det_dataset({os.path.join(out, 'yolo', 'data.yaml')!r}), task="obb", imgsz=320,
                 augment=False, rect=False, cache=False)
rows = []
for i in range(len(ds)):
    it = ds[i]
    (gain, _), (px, py) = it["ratio_pad"]
    b = it["bboxes"].numpy()
    H, W = it["resized_shape"]
    rows.append([os.path.basename(it["im_file"]), [[float(v) for v in ((r[0] * W - px) / gain, (r[1] * H - py) / gain,
                 r[2] * W / gain, r[3] * H / gain, r[4])] for r in b]])
print("ROWS", json.dumps(rows))
"""
    rows = json.loads(next(x for x in run_ultralytics(code, tmp_path).splitlines() if x.startswith("ROWS"))[5:])
    d = json.load(open(os.path.join(out, "annotations.json")))
    ids = {im["file_name"]: im["id"] for im in d["images"]}
    n = 0
    for name, boxes in rows:
        ours = [a["obb"] for a in d["annotations"] if a["image_id"] == ids[name] and not a["ignore"]]
        assert len(boxes) == len(ours)
        for (cx, cy, w, h, t), (ox, oy, ow, oh, oa) in zip(boxes, ours):
            assert abs(cx - ox) < 0.05 and abs(cy - oy) < 0.05 and sorted([w, h]) == pytest.approx(sorted([ow, oh]), abs=0.05)
            if ow - oh > 1:  # (a near-square's angle is defined up to 90 degrees)
                assert abs((np.degrees(t) - oa + 90) % 180 - 90) < 0.1
            n += 1
    assert n > 10


# ---- keypoints -----------------------------------------------------------------------------

def _kp_view(library, sc, frame):
    from simgen.labels import View

    return View(sc, frame, np.linalg.inv(sc.camera.pose), keypoints={o.asset: library.keypoints(o.asset)
                                                                      for o in sc.objects})


def _keypoints(library, sc, frame):
    from simgen.labels import Target
    from simgen.labels.keypoints import keypoints

    view = _kp_view(library, sc, frame)
    out = {}
    for o in sc.objects:
        m = frame.instance == o.instance_id
        out[o.instance_id] = np.array(keypoints(view, Target(o, m, (0, 0, 1, 1), m, (0, 0, 0, 0)))["keypoints"]).reshape(-1, 3)
    return out


def test_cube_corner_keypoints_project_and_see_as_analytic(renderer, library):
    Rz = trimesh.transformations.rotation_matrix(np.radians(20), [0, 0, 1])[:3, :3]
    eye = np.array([0.25, -0.35, 0.45])
    cam = camera(eye, [0.0, 0.0, 0.035])
    sc = scene([("cube", [0.0, 0.0, 0.035], Rz, 1.0)], cam)
    frame = renderer.render(sc, library)
    kp = _keypoints(library, sc, frame)[1]
    names, _, skeleton = library.keypoints("cube")
    signs = np.array([[1 if c == "+" else -1 for c in n[0::2]] for n in names])  # '-x+y-z' -> (-1, 1, -1)
    world = signs * 0.035 @ Rz.T + [0, 0, 0.035]
    uv, _ = project(cam.K, cam.pose, world)
    assert np.abs(kp[:, :2] - uv).max() < 0.01
    # A corner of a convex box is seen when one of its three faces faces the camera.
    seen = [any(np.dot(Rz @ (s[d] * np.eye(3)[d]), eye - (Rz @ (s[d] * np.eye(3)[d] * 0.035) + [0, 0, 0.035])) > 0
                for d in range(3)) for s in signs]
    assert kp[:, 2].tolist() == [2 if s else 1 for s in seen] and sum(seen) == 7
    assert len(skeleton) == 12 and all((signs[a] != signs[b]).sum() == 1 for a, b in skeleton)  # the edges


def test_keypoints_behind_an_occluder_and_outside_the_frame(renderer, library):
    # straight down, close: the bottom corners project 4 px inside the top face (from 1 m they
    # would be within a pixel of its edge, where a hidden point counts as visible)
    cam = camera([0.0, 0.0, 0.45], [0.0, 0.0, 0.0])
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0), ("brick", [0.12, 0.0, 0.30], None, 2.0)], cam)
    frame = renderer.render(sc, library)
    kp = _keypoints(library, sc, frame)[1]
    names = library.keypoints("cube")[0]
    for (_, _, v), n in zip(kp, names):
        top, right = n.endswith("+z"), n.startswith("+x")
        # bottom corners: hidden by the cube itself; top ones on the +x side: by the brick
        assert v == (2 if top and not right else 1), (n, v)
    # a cube centred on the frame's left edge: the corners left of it are outside (v = 0, x = y = 0)
    from test_labels_analytic import _pixel_to_world

    centre = _pixel_to_world(cam, -0.5, cam.K[1, 2], 0.035)
    sc = scene([("cube", centre, None, 1.0)], cam)
    frame = renderer.render(sc, library)
    kp = _keypoints(library, sc, frame)[1]
    signs = np.array([[1 if c == "+" else -1 for c in n[0::2]] for n in names])
    uv, _ = project(cam.K, cam.pose, signs * 0.035 + centre)
    assert ((kp[:, 2] == 0) == (uv[:, 0] < -0.5)).all() and (kp[kp[:, 2] == 0, :2] == 0).all()
    assert 0 < (kp[:, 2] == 0).sum() < 8


def test_declared_keypoints_in_the_mesh_files_units(tmp_path):
    from simgen.assets import AssetLibrary

    box = trimesh.creation.box(extents=[4.0, 2.0, 6.0])  # centimetres, away from the origin
    box.apply_translation([10.0, -3.0, 5.0])
    box.export(str(tmp_path / "part.obj"))
    tip = box.vertices[np.argmax(box.vertices @ [1, 1, 1])]
    (tmp_path / "set.yaml").write_text(
        "name: mine\nassets:\n  - {name: part, mesh: part.obj, scale: 0.01, keypoints: {tip: " + str(tip.tolist())
        + ", mid: [10, -3, 5]}, skeleton: [[tip, mid]]}\n")
    lib = AssetLibrary.from_sets([str(tmp_path / "set.yaml")])
    names, pts, skeleton = lib.keypoints("part")
    mesh = lib.visual_mesh("part")
    assert names == ("tip", "mid") and skeleton == ((0, 1),)
    assert pts[0] == pytest.approx(mesh.vertices[np.argmax(mesh.vertices @ [1, 1, 1])], abs=1e-9)  # the same vertex
    assert pts[1] == pytest.approx(mesh.bounds.mean(axis=0), abs=1e-9)  # the box centre: the model origin


@pytest.mark.parametrize("entry, words", [
    ("keypoints: [1, 2, 3]", "keypoints must be a mapping"),
    ("keypoints: {a: [1, 2]}", "keypoint 'a' must be \\[x, y, z\\], three finite numbers"),
    ("keypoints: {a: [.nan, 2, 3]}", "keypoint 'a' must be"),
    ("keypoints: {a: [true, 2, 3]}", "keypoint 'a' must be"),
    ("keypoints: {a: [1, 2, 3]}, skeleton: [[a, b]]", "'b' is not one of its keypoints \\(a\\)"),
    ("keypoints: {a: [1, 2, 3]}, skeleton: [[a, a]]", "joins a keypoint to itself"),
    ("keypoints: {a: [1, 2, 3], b: [0, 0, 0]}, skeleton: [[a, b], [b, a]]", "repeats an edge"),
    ("keypoints: {a: [1, 2, 3]}, skeleton: [a]", "pairs of keypoint names"),
    ("skeleton: [[a, b]]", "skeleton needs keypoints"),
])
def test_bad_keypoint_declarations_name_the_problem(tmp_path, entry, words):
    from simgen.assets import AssetLibrary
    from simgen.errors import AssetError

    (tmp_path / "set.yaml").write_text("name: m\nassets:\n  - {name: b, primitive: box, " + entry + "}\n")
    with pytest.raises(AssetError, match=words):
        AssetLibrary.from_sets([str(tmp_path / "set.yaml")])


def test_a_class_with_two_keypoint_lists_is_refused(tmp_path):
    (tmp_path / "set.yaml").write_text(
        "name: m\nassets:\n  - {name: a, category: thing, primitive: box}\n"
        "  - {name: b, category: thing, primitive: cone}\n")
    r = run_cli("num_images=1", f"objects.asset_sets=[{tmp_path / 'set.yaml'}]", "annotate.labels=[keypoints]",
                f"output_dir={tmp_path / 'd'}")
    assert r.returncode == 3 and "class 'thing' have different keypoints" in r.stderr
    assert not os.path.exists(tmp_path / "d" / "annotations.json")


def test_keypoints_round_trip_through_pycocotools_and_ultralytics(tmp_path):
    import importlib.util

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = str(tmp_path / "d")
    r = run_cli("num_images=6", "seed=4", "camera.width=320", "camera.height=240", "progress=false",
                "objects.asset_sets=[primitives]", "annotate.labels=[keypoints]", "formats=[coco,yolo]",
                "yolo.pose=true", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    gt = COCO(os.path.join(out, "annotations.json"))
    cats = {c["name"]: c for c in gt.dataset["categories"]}
    assert len(cats["cube"]["keypoints"]) == 8 and cats["sphere"]["keypoints"] == []
    cube = cats["cube"]["id"]
    dets = [dict(image_id=a["image_id"], category_id=a["category_id"], keypoints=a["keypoints"], score=1.0)
            for a in gt.dataset["annotations"] if a["category_id"] == cube and a["num_keypoints"] and not a["ignore"]]
    assert len(dets) >= 3
    E = COCOeval(gt, gt.loadRes(dets), "keypoints")
    E.params.catIds, E.params.kpt_oks_sigmas = [cube], np.full(8, 0.05)
    E.evaluate()
    E.accumulate()
    E.summarize()
    assert E.stats[0] == pytest.approx(1.0)  # the labels as predictions: a perfect score
    assert run_cli("validate", out).returncode == 0  # (the pose label lines included)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("ultralytics") is None:
        return
    code = f"""
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset
data = check_det_dataset({os.path.join(out, 'yolo', 'data.yaml')!r})
ds = YOLODataset(img_path={os.path.join(out, 'yolo', 'images', 'train')!r}, data=data, task="pose", imgsz=320,
                 augment=False, rect=False, cache=False)
print("ROWS", json.dumps([[os.path.basename(l["im_file"]), l["keypoints"].tolist()] for l in ds.labels]))
"""
    rows = json.loads(next(x for x in run_ultralytics(code, tmp_path).splitlines() if x.startswith("ROWS"))[5:])
    ids = {im["file_name"]: im for im in gt.dataset["images"]}
    n = 0
    for name, kps in rows:
        im = ids[name]
        ours = [a for a in gt.dataset["annotations"] if a["image_id"] == im["id"] and not a["ignore"]]
        assert len(kps) == len(ours)
        for theirs, a in zip(np.array(kps), ours):  # (K, 3): x, y normalised, visibility
            own = np.array(a["keypoints"], float).reshape(-1, 3)
            assert theirs.shape == (8, 3) and (theirs[len(own):] == 0).all()
            seen = own[:, 2] > 0
            assert (theirs[:len(own), 2] == own[:, 2]).all()
            got = theirs[:len(own)][seen, :2] * [im["width"], im["height"]] - 0.5
            assert (np.abs(got - np.clip(own[seen, :2], -0.5, [im["width"] - 0.5, im["height"] - 0.5])) < 0.01).all()
            n += int(seen.sum())
    assert n > 20


# ---- surface normals -----------------------------------------------------------------------

def _normals(frame):
    return frame.normals.astype(np.float64) / 127.5 - 1.0


def _angle(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def test_cube_normals_are_its_face_normals_in_the_camera_frame(renderer, library):
    from test_labels_analytic import _rays, _world_mesh

    Rz = trimesh.transformations.rotation_matrix(np.radians(20), [0, 0, 1])[:3, :3]
    cam = camera([0.25, -0.35, 0.45], [0.0, 0.0, 0.035])
    sc = scene([("cube", [0.0, 0.0, 0.035], Rz, 1.0)], cam)
    frame = renderer.render(sc, library, normals=True)
    assert ((frame.normals.sum(-1) == 0) == (frame.depth == 0)).all()  # the same rasterization as depth
    n = _normals(frame)
    # the floor: world +z seen from the camera
    w2c = np.linalg.inv(cam.pose)[:3, :3]
    floor = (frame.instance == 0) & (frame.depth > 0)
    assert np.median(_angle(n[floor], w2c @ [0, 0, 1.0])) < 1.0
    # the cube: per pixel, the normal of the face its ray hits, turned into the camera frame
    vs, us = np.nonzero(frame.instance == 1)
    o, d, _ = _rays(cam, np.c_[us, vs].astype(float))
    cube = _world_mesh(library, sc.objects[0])
    _, ray_idx, tri = cube.ray.intersects_location(o, d, multiple_hits=False)
    expect = cube.face_normals[tri] @ w2c.T
    err = _angle(n[vs[ray_idx], us[ray_idx]], expect)
    faces = np.round(expect, 3)
    groups = [np.all(faces == f, axis=1) for f in np.unique(faces, axis=0)]
    assert len([g for g in groups if g.sum() > 100]) == 3  # three faces seen
    for g in groups:
        if g.sum() > 100:
            assert np.median(err[g]) < 1.0, np.median(err[g])
    assert (n[vs, us] @ [0, 0, 1.0] < 0).all()  # every normal faces the camera (OpenCV z points away)


def test_sphere_normals_agree_with_rays_and_depth(renderer, library, tmp_path):
    from simgen.assets import AssetLibrary

    # and a sphere whose faces and normals point inwards: drawn is its inside (the far half),
    # whose normals face the camera, towards the centre
    inside_out = trimesh.creation.icosphere(subdivisions=3, radius=0.04)
    inside_out.invert()
    inside_out.export(str(tmp_path / "inv.obj"))
    (tmp_path / "set.yaml").write_text("name: inv\nassets:\n  - {name: inv, mesh: inv.obj}\n")
    lib = AssetLibrary.from_sets(["primitives", str(tmp_path / "set.yaml")])
    cam = camera([0.2, -0.3, 0.35], [0.0, 0.0, 0.04])
    w2c = np.linalg.inv(cam.pose)
    centre = w2c[:3, :3] @ [0.0, 0.0, 0.04] + w2c[:3, 3]
    for asset, outwards in (("sphere", 1), ("inv", -1)):
        sc = scene([(asset, [0.0, 0.0, 0.04], None, 1.0)], cam)
        frame = renderer.render(sc, lib, normals=True)
        vs, us = np.nonzero(frame.instance == 1)
        # the surface point of each pixel from its ray and depth, in the camera frame
        p = np.c_[us, vs, np.ones(len(us))] @ np.linalg.inv(cam.K).T * frame.depth[vs, us][:, None]
        n = _normals(frame)[vs, us]
        err = _angle(n, outwards * (p - centre))
        assert len(us) > 500 and np.median(err) < 1.0 and np.percentile(err, 95) < 3.0, (asset, np.median(err))
        # facing the camera (interpolated normals at the silhouette may lean a few degrees past it)
        facing = -(n * p).sum(axis=1) / np.linalg.norm(p, axis=1)
        assert (facing > -0.1).all() and (facing > 0).mean() > 0.97


def test_normals_in_a_dataset_follow_lens_distortion_and_validate(tmp_path):
    from simgen.io import read_png

    out = str(tmp_path / "d")
    r = run_cli("num_images=4", "seed=6", "camera.width=320", "camera.height=240", "progress=false",
                "render.write_normals=true", "edge_cases.lens_distortion={p:1.0}", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    d = json.load(open(os.path.join(out, "annotations.json")))
    for im in d["images"]:
        assert "dist_coeffs" in im and im["normals_file"] == f"normals/{os.path.splitext(im['file_name'])[0]}.png"
        n, depth = read_png(os.path.join(out, im["normals_file"])), read_png(os.path.join(out, im["depth_file"]))
        assert n.shape == (im["height"], im["width"], 3) and ((n.sum(-1) == 0) == (depth == 0)).all()
        v = n[depth > 0].astype(float) / 127.5 - 1
        assert np.abs(np.linalg.norm(v, axis=1) - 1).max() < 0.02
    assert run_cli("validate", out).returncode == 0
    os.remove(os.path.join(out, d["images"][0]["normals_file"]))
    r = run_cli("validate", out)
    assert r.returncode == 1 and "normals/000000.png" in r.stdout + r.stderr
    # without render.write_normals: no normals/ folder and no normals_file
    r = run_cli("num_images=2", "camera.width=160", "camera.height=120", "progress=false", f"output_dir={tmp_path / 'e'}")
    assert r.returncode == 0 and not os.path.exists(tmp_path / "e" / "normals")


def test_the_far_face_of_a_thin_plate_is_hidden(tmp_path, renderer):
    """The centres of an 8 mm plate's two faces, seen from above: the top one visible, the
    bottom one hidden by the plate itself (a tolerance of centimetres would call it seen)."""
    from simgen.assets import AssetLibrary

    (tmp_path / "set.yaml").write_text(
        "name: m\nassets:\n  - {name: plate, primitive: box, extents: [0.08, 0.08, 0.008], "
        "keypoints: {top: [0, 0, 0.004], bottom: [0, 0, -0.004]}}\n")
    lib = AssetLibrary.from_sets([str(tmp_path / "set.yaml")])
    for eye in ([0.0, 0.0, 0.6], [0.15, -0.2, 0.9]):
        cam = camera(eye, [0.0, 0.0, 0.0])
        sc = scene([("plate", [0.0, 0.0, 0.004], None, 1.0)], cam)
        kp = _keypoints(lib, sc, renderer.render(sc, lib))[1]
        assert kp[:, 2].tolist() == [2, 1], (eye, kp)


# ---- hostile use ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["formats=[coco,semantic,semantic]"], "formats names semantic twice"),
    (["yolo.obb=true"], "formats has no yolo"),
    (["formats=[coco,yolo]", "yolo.pose=true", "annotate.labels=[keypoints]", "objects.asset_sets=[pybullet]"],
     "no class has keypoints"),
    (["annotate.labels=[obb,obb]"], "names a kind twice"),
    (["annotate.labels=[normals]"], "unknown annotate.labels"),
])
def test_bad_label_options_stop_before_any_image(tmp_path, args, words):
    out = tmp_path / "d"
    r = run_cli("num_images=2", "camera.width=64", "camera.height=48", "progress=false", *args, f"output_dir={out}")
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (out / "images").exists() or not os.listdir(out / "images")


def test_a_users_semantic_folder_is_refused_before_rendering(tmp_path):
    out = tmp_path / "d"
    r = run_cli("num_images=2", "camera.width=64", "camera.height=48", "progress=false", f"output_dir={out}")
    assert r.returncode == 0
    (out / "semantic").mkdir()
    (out / "semantic" / "mine.txt").write_text("mine")
    r = run_cli("num_images=2", "camera.width=64", "camera.height=48", "progress=false", "formats=[coco,semantic]",
                "overwrite=true", f"output_dir={out}")
    assert r.returncode == 5 and "simgen did not write it" in r.stderr
    assert (out / "semantic" / "mine.txt").read_text() == "mine" and not os.listdir(out / "images")


def test_export_names_what_is_wrong(tmp_path):
    out = tmp_path / "d"
    assert run_cli("num_images=3", "camera.width=64", "camera.height=48", "progress=false",
                   f"output_dir={out}").returncode == 0
    for to, words in ((["--to", "semantic,semantic"], "names a format twice"),
                      (["--to", "semantic", "--pose"], "--to has no yolo"),
                      (["--to", ""], "names no format")):
        r = run_cli("export", str(out), *to)
        assert r.returncode == 1 and words in r.stderr, (to, r.stderr)
    os.remove(out / "masks" / "000001.png")
    r = run_cli("export", str(out), "--to", "semantic")
    assert r.returncode == 1 and "masks/000001.png" in r.stderr and "is missing" in r.stderr and "WARN" not in r.stderr
    assert not (out / "semantic").exists()
