"""Coverage (objects.placement=coverage, preset=coverage) and the report's coverage survey.

Placement: each class's k-th object in a balance block takes point k of a scrambled Sobol
sequence, so the first 2**m objects of a class hit each of the 2**m equal intervals of every
coordinate exactly once. The coordinates are recovered here from the sampled geometry alone
(the model-to-camera rotation's quaternion and the object's depth), not read back from the
sampler. The report: its view cells have equal area, and a known pose lands in its cell."""
import math
from collections import defaultdict

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from simgen.config import compose
from simgen.geometry import random_rotation
from simgen.report import VIEW_AZIMUTHS, VIEW_BANDS, VIEW_BINS, size_bin, view_bin
from simgen.scenes import _radius, sample_scene

M = 32  # objects per class checked: a power of two, so the first M points form a net


def _m2c(scene, o):
    return np.linalg.inv(np.asarray(scene.camera.pose)) @ np.asarray(o.pose)


def _per_class(cfg, library, images):
    out = defaultdict(list)  # category -> [(u1 from the rotation, u4 from the size)]
    lo, hi = cfg.objects.coverage_size
    for i in range(images):
        s = sample_scene(cfg, library, int(cfg.seed), i)
        f, short = float(s.camera.K[1, 1]), min(s.camera.width, s.camera.height)
        for o in s.objects:
            if not o.labeled:
                continue
            T = _m2c(s, o)
            x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
            u1 = z * z + w * w  # Shoemake: q = (sqrt(1-u1) sin, sqrt(1-u1) cos, sqrt(u1) sin, sqrt(u1) cos)
            r = _radius(library, o.asset) * float(o.scale[0])
            share = 2 * r * f / (T[2, 3] * short)
            out[o.category].append((u1, math.log(share / lo) / math.log(hi / lo)))
    return out


def test_every_class_takes_stratified_orientations_and_sizes(library):
    cfg = compose(["preset=coverage", "seed=5", "objects.count=[4,10]"])
    per = _per_class(cfg, library, 60)
    assert set(per) == set(library.categories)
    for cat, pts in per.items():
        assert len(pts) >= M, cat
        u = np.array(pts[:M])
        for d in range(2):
            assert ((u[:, d] > -1e-6) & (u[:, d] < 1 + 1e-6)).all(), (cat, d)
            cells = np.clip(np.floor(u[:, d] * M + 1e-9), 0, M - 1).astype(int)
            assert sorted(cells.tolist()) == list(range(M)), (cat, d)  # one per interval: a (0, m, s)-net


def test_coverage_classes_are_dealt_round_robin(library):
    cfg = compose(["preset=coverage", "seed=2"])
    counts = defaultdict(int)
    for i in range(30):
        for o in sample_scene(cfg, library, 2, i).objects:
            if o.labeled:
                counts[o.category] += 1
    assert max(counts.values()) - min(counts.values()) <= 1


def test_view_cells_have_equal_area():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(64000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    counts = np.bincount([view_bin(np.eye(3), -d) for d in v], minlength=VIEW_BINS)
    assert counts.shape == (VIEW_BINS,)
    assert np.abs(counts / counts.mean() - 1).max() < 0.06


@pytest.mark.parametrize("cell", range(VIEW_BINS))
def test_a_camera_seen_from_a_known_direction_lands_in_its_cell(cell):
    band, az = divmod(cell, VIEW_AZIMUTHS)
    z = -1 + 2 * (band + 0.5) / VIEW_BANDS
    phi = -math.pi + 2 * math.pi * (az + 0.5) / VIEW_AZIMUTHS
    d = np.array([math.sqrt(1 - z * z) * math.cos(phi), math.sqrt(1 - z * z) * math.sin(phi), z])  # object -> camera
    R = random_rotation(np.random.default_rng(cell))  # any model-to-camera rotation
    t = -R @ (0.7 * d)  # camera centre at 0.7 * d in the model frame
    assert view_bin(R, t) == cell


def test_size_bins():
    assert size_bin([0, 0, 10, 3], 640, 480) == 0  # 10/480 < 0.04
    assert size_bin([0, 0, 3, 30], 640, 480) == 1  # 30/480 = 0.0625 in [0.04, 0.08)
    assert size_bin([0, 0, 3, 40], 640, 480) == 2  # 0.083 in [0.08, 0.16)
    assert size_bin([0, 0, 400, 10], 640, 480) == 5


def test_the_report_counts_coverage_per_class(tmp_path):
    from simgen.report import statistics
    from simgen.runner import run

    out = tmp_path / "cov"
    run(compose(["preset=coverage", "num_images=6", "camera.width=128", "camera.height=96", "workers=1",
                 "progress=false", "objects.asset_sets=[primitives]", f"output_dir={out}"]))
    import json

    coco = json.load(open(out / "annotations.json"))
    cov = statistics(str(out), with_pixels=False)["coverage"]
    assert cov["view_bins"] == VIEW_BINS
    names = {c["id"]: c["name"] for c in coco["categories"]}
    want = defaultdict(set)
    n = defaultdict(int)
    for a in coco["annotations"]:
        n[names[a["category_id"]]] += 1
        want[names[a["category_id"]]].add(view_bin(a["pose"]["R_m2c"], a["pose"]["t_m2c"]))
    for name, c in cov["per_class"].items():
        assert c["instances"] == n[name]
        assert c["views"] == len(want[name])
        assert sum(c["size_counts"]) == n[name]
        assert 0 <= c["view_evenness"] <= 1


@pytest.mark.parametrize("share", [0.1, 0.35])
def test_camera_object_share_frames_the_median_object_at_that_share(library, share):
    """The camera stands where the scene's median labeled object spans ``share`` of the
    shorter image side: d = fy * diameter / (share * min(w, h)), whatever the objects' size."""
    from simgen.scenes import framed_size, labeled_sizes

    for scale in (0.1, 1.0, 10.0):  # millimetre parts to furniture: the same framing
        cfg = compose([f"camera.object_share={share}", "camera.look_at_jitter=0", f"objects.scale={scale}",
                       "camera.resolution={choice:[[640,480],[300,400]]}"])
        for i in range(4):
            s = sample_scene(cfg, library, 0, i)
            diam = float(np.median([2 * _radius(library, o.asset) * o.scale[0] for o in s.objects if o.labeled]))
            assert framed_size(cfg, library, labeled_sizes(s)) == pytest.approx(diam)
            d = np.linalg.norm(np.asarray(s.camera.pose)[:3, 3])  # looks at the origin (no jitter)
            fy = float(s.camera.K[1, 1])
            assert fy * diam / d == pytest.approx(share * min(s.camera.width, s.camera.height), rel=1e-9)


def test_camera_object_share_leaves_the_other_camera_draws_alone(library):
    a = sample_scene(compose([]), library, 0, 3).camera
    b = sample_scene(compose(["camera.object_share=0.2"]), library, 0, 3).camera
    assert np.array_equal(a.K, b.K)
    za, zb = np.asarray(a.pose)[:3, 2], np.asarray(b.pose)[:3, 2]  # the viewing direction: elevation, azimuth
    assert np.allclose(za, zb, atol=0.05) and not np.allclose(a.pose, b.pose)


def test_camera_distance_given_while_the_scene_frames_by_size_is_one_line_naming_the_fix():
    from simgen.errors import ConfigError

    with pytest.raises(ConfigError, match=r"camera.distance has no effect .*fix: add camera.object_share=null"):
        compose(["camera.distance=2"])
    cfg = compose(["camera.object_share=null", "camera.distance=2"])
    assert cfg.camera.object_share is None and cfg.camera.distance == 2
    assert compose(["scene=bin", "camera.distance=2"]).camera.object_share is None  # bin places by distance
