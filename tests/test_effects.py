"""Edge cases: firing probabilities, the direction of every effect, labels untouched by
photometric effects and moved consistently by geometric ones, scene conditions, presets."""
from dataclasses import replace

import numpy as np
import pytest

from simgen import effects
from simgen.config import compose
from simgen.pipeline import Pipeline

SMALL = ["camera.width=240", "camera.height=180", "objects.count=[4,8]"]


@pytest.fixture(scope="module")
def base():
    """A settled, rendered scene (and its pipeline) every image effect is applied to."""
    pipe = Pipeline(compose(SMALL))
    s = pipe.make(0)
    yield pipe, s
    pipe.close()


def run(name, frame, scene, **params):
    cond = effects.REGISTRY[name]
    p = {k: (v if not isinstance(v, list) else float(np.mean(v))) for k, v in cond.defaults.items()}
    p.update(params)
    out, meta = cond.apply(frame, p, np.random.default_rng(0), scene)
    return out, meta


def test_probability_zero_never_fires_one_always():
    cfg = compose(["edge_cases.fog={p:0.0}", "edge_cases.jpeg={p:1.0}", "edge_cases.defocus={p:0.5}"])
    fired = [[f.name for f in effects.sample(cfg, 0, i)] for i in range(200)]
    assert all("fog" not in f and "jpeg" in f for f in fired)
    share = sum("defocus" in f for f in fired) / 200
    assert 0.38 < share < 0.62


def test_conditions_do_not_shift_each_other():
    a = compose(["edge_cases=none", "edge_cases.fog={p:0.5}", "edge_cases.jpeg={p:0.5}"])
    b = compose(["edge_cases=none", "edge_cases.fog={p:0.5}", "edge_cases.jpeg={p:0.5}", "edge_cases.defocus={p:1.0}"])
    for i in range(30):
        fa = {f.name: f.params for f in effects.sample(a, 0, i)}
        fb = {f.name: f.params for f in effects.sample(b, 0, i) if f.name != "defocus"}
        assert fa == fb


def _lap_var(rgb):
    import cv2

    return cv2.Laplacian(rgb.astype(np.float32).mean(axis=2), cv2.CV_32F).var()


@pytest.mark.parametrize("name,check", [
    ("sensor_noise", lambda a, b, f: np.var(b.rgb.astype(float) - a.rgb.astype(float)) > 1.0),
    ("low_light", lambda a, b, f: b.rgb.mean() < 0.5 * a.rgb.mean()),
    ("overexposure", lambda a, b, f: b.rgb.mean() > 1.3 * a.rgb.mean() and (b.rgb == 255).mean() > (a.rgb == 255).mean()),
    ("jpeg", lambda a, b, f: (b.rgb != a.rgb).mean() > 0.2 and abs(b.rgb.mean() - a.rgb.mean()) < 3),
    ("defocus", lambda a, b, f: _lap_var(b.rgb) < 0.5 * _lap_var(a.rgb)),
    ("motion_blur", lambda a, b, f: _lap_var(b.rgb) < 0.5 * _lap_var(a.rgb)),
    ("colour_cast", lambda a, b, f: b.rgb[..., 0].mean() > 1.1 * a.rgb[..., 0].mean()),
])
def test_photometric_effects_change_pixels_not_labels(base, name, check):
    pipe, s = base
    params = {"red": 1.25, "green": 1.0, "blue": 0.8} if name == "colour_cast" else {}
    out, _ = run(name, s.frame, s.scene, **params)
    assert check(s.frame, out, s)
    assert (out.instance == s.frame.instance).all() and (out.depth == s.frame.depth).all()
    assert effects.REGISTRY[name].moves_labels is False


def test_fog_brightens_with_depth(base):
    pipe, s = base
    dark = replace(s.frame, rgb=np.full_like(s.frame.rgb, 20))
    out, _ = run("fog", dark, s.scene, density=1.0, airlight=0.9)
    d = s.frame.depth
    near = (d > 0) & (d < np.percentile(d[d > 0], 20))
    far = d > np.percentile(d[d > 0], 80)
    assert out.rgb[far].mean() > out.rgb[near].mean() > 20
    assert (out.rgb[d == 0] == round(0.9 * 255)).all()  # no surface: pure airlight
    assert (out.instance == s.frame.instance).all()


def test_blur_keeps_each_object_centred_on_its_mask(base):
    """The blur rule: labels are the mid-exposure object; a symmetric kernel keeps the
    object's colour mass centred where its mask is."""
    pipe, s = base
    ids = [a.instance_id for a in s.annotations if a.area > 300]
    black = np.zeros_like(s.frame.rgb)
    for i in ids[:3]:
        lone = np.where((s.frame.instance == i)[..., None], 200, black).astype(np.uint8)
        out, _ = run("motion_blur", replace(s.frame, rgb=lone), s.scene, length=15.0, angle_deg=30.0)
        ys, xs = np.nonzero(s.frame.instance == i)
        w = out.rgb.mean(axis=2)
        yy, xx = np.mgrid[0:w.shape[0], 0:w.shape[1]]
        c = np.array([(xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()])
        assert np.allclose(c, [xs.mean(), ys.mean()], atol=1.0), (c, xs.mean(), ys.mean())


def test_lens_distortion_moves_labels_with_pixels(base):
    import cv2

    from simgen.annotate import annotate

    pipe, s = base
    out, meta = run("lens_distortion", s.frame, s.scene, k1=-0.3, k2=0.0)
    assert meta["dist_coeffs"][:2] == [-0.3, 0.0]
    K = np.asarray(s.scene.camera.K)
    anns = {a.instance_id: a for a in annotate(s.scene, out)}
    for a in s.annotations:
        if a.area < 200 or a.instance_id not in anns:
            continue
        ys, xs = np.nonzero(s.frame.instance == a.instance_id)
        # Distort the undistorted centroid with OpenCV's model: the warped mask sits there.
        ray = np.linalg.inv(K) @ [xs.mean(), ys.mean(), 1.0]
        pt, _ = cv2.projectPoints(ray[None], np.zeros(3), np.zeros(3), K, np.array([-0.3, 0, 0, 0, 0.0]))
        ys2, xs2 = np.nonzero(out.instance == a.instance_id)
        assert np.hypot(xs2.mean() - pt[0, 0, 0], ys2.mean() - pt[0, 0, 1]) < 2.0
    # Labels stay exact on the warped buffers.
    assert set(np.unique(out.instance).tolist()) - {0} == set(anns)
    assert (out.depth[out.instance > 0] > 0).all()
    for i, m in out.unoccluded.items():
        assert not ((out.instance == i) & ~m).any()


def test_scene_conditions(base):
    pipe, s = base
    cfg_small = compose(SMALL + ["edge_cases.small_objects={p:1.0,distance_factor:3.0}"])
    small = Pipeline(cfg_small)
    area0 = np.mean([a.area for a in s.annotations])
    s2 = small.make(0)
    assert np.mean([a.area for a in s2.annotations]) < 0.3 * area0
    assert s2.conditions == {"small_objects": {"distance_factor": 3.0}}
    small.close()

    trunc = Pipeline(compose(SMALL + ["edge_cases.truncation={p:1.0}"]))
    assert any(max([a.truncation for a in trunc.make(i).annotations] + [0]) > 0.25 for i in range(3))
    trunc.close()

    occ = Pipeline(compose(SMALL + ["edge_cases.occlusion={p:1.0,occluders:3}"]))
    s3 = occ.make(0)
    assert sum(1 for o in s3.scene.objects if o.instance_id < 0) == 3
    assert all(a.instance_id > 0 for a in s3.annotations)
    assert np.mean([a.visibility for a in s3.annotations]) < np.mean([a.visibility for a in s.annotations])
    occ.close()

    hard = Pipeline(compose(SMALL + ["edge_cases.hard_shadows={p:1.0}"]))
    s4 = hard.make(0)
    assert [l.kind for l in s4.scene.lights] == ["directional"] and s4.scene.ambient == pytest.approx(0.02)
    hard.close()


def test_presets_compose_and_errors():
    from simgen.errors import ConfigError

    cfg = compose(["edge_cases=[night,clutter]"])
    assert {"low_light", "sensor_noise", "occlusion", "truncation"} <= set(cfg.edge_cases)
    assert set(compose(["edge_cases=mixed"]).edge_cases) == set(effects.REGISTRY)
    with pytest.raises(ConfigError, match="unknown edge case 'smog'"):
        compose(["edge_cases.smog={p:1.0}"])
    with pytest.raises(ConfigError, match="probability"):
        compose(["edge_cases.fog={p:1.5}"])
    with pytest.raises(ConfigError, match="not a parameter of fog"):
        compose(["edge_cases.fog={p:1.0,rain:2}"])
    with pytest.raises(ConfigError, match="unknown edge_cases preset"):
        compose(["edge_cases=monsoon"])
    with pytest.raises(ConfigError, match="edge_cases.fog.density must be >= 0"):
        compose(["edge_cases.fog={p:1.0,density:-1}"])
    with pytest.raises(ConfigError, match="edge_cases.jpeg.quality must be <= 100"):
        compose(["edge_cases.jpeg={p:1.0,quality:[50,150]}"])
