"""Labels against geometry we can compute by hand: ray casting, projection, known occlusion."""
import numpy as np
import pytest
import trimesh
from conftest import camera, scene

from simgen.annotate import annotate, decode_rle, mask_to_bbox
from simgen.geometry import project


def _rays(cam, pixels):
    """World-space rays through (N,2) pixel centres (u, v) of an OpenCV camera."""
    Kinv = np.linalg.inv(cam.K)
    d_cam = np.c_[pixels, np.ones(len(pixels))] @ Kinv.T
    R, t = cam.pose[:3, :3], cam.pose[:3, 3]
    d = d_cam @ R.T
    return np.repeat(t[None], len(pixels), 0), d / np.linalg.norm(d, axis=1, keepdims=True), d_cam[:, 2] / np.linalg.norm(d_cam, axis=1)


def _world_mesh(library, obj):
    m = library.visual_mesh(obj.asset).copy()
    m.apply_transform(np.asarray(obj.pose) @ np.diag([*obj.scale, 1.0]))
    return m


def test_cube_box_and_depth_match_analytic(renderer, library):
    Rz = trimesh.transformations.rotation_matrix(np.radians(20), [0, 0, 1])[:3, :3]
    cam = camera([0.25, -0.35, 0.45], [0.0, 0.0, 0.035])
    sc = scene([("cube", [0.0, 0.0, 0.035], Rz, 1.0)], cam)
    frame = renderer.render(sc, library)
    mask = frame.instance == 1
    assert mask.sum() > 500
    # Box: the analytic projection of the 8 corners.
    corners = trimesh.bounds.corners(np.array([[-0.035] * 3, [0.035] * 3])) @ Rz.T + [0, 0, 0.035]
    uv, _ = project(cam.K, cam.pose, corners)
    x, y, w, h = mask_to_bbox(mask)
    expect = [np.ceil(uv[:, 0].min()), np.ceil(uv[:, 1].min()), np.floor(uv[:, 0].max()), np.floor(uv[:, 1].max())]
    got = [x, y, x + w - 1, y + h - 1]
    assert np.abs(np.array(got) - expect).max() <= 1, (got, expect)
    # Depth: cast a ray through every pixel centre; the hit distance along z is the depth.
    vs, us = np.nonzero(mask)
    o, d, cos = _rays(cam, np.c_[us, vs].astype(float))
    cube = _world_mesh(library, sc.objects[0])
    hits, ray_idx, _ = cube.ray.intersects_location(o, d, multiple_hits=False)
    assert len(ray_idx) >= 0.99 * len(us)  # every mask pixel's ray hits the cube (edge ties aside)
    dist = np.linalg.norm(hits - o[ray_idx], axis=1) * cos[ray_idx]
    err = np.abs(frame.depth[vs[ray_idx], us[ray_idx]] - dist)
    assert np.median(err) < 2e-4 and np.percentile(err, 99) < 2e-3
    # Depth and mask agree: depth is positive on the cube and on the floor, 0 nowhere inside.
    assert (frame.depth[mask] > 0).all()


def test_half_occluded_visibility_and_disjoint_masks(renderer, library):
    cam = camera([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])  # straight down: the x = 0 plane is one image line
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0),  # target
                ("brick", [0.12, 0.0, 0.30], None, 2.0)],  # occluder covering world x > 0
               cam)
    frame = renderer.render(sc, library)
    anns = {a.instance_id: a for a in annotate(sc, frame)}
    assert set(anns) == {1, 2}
    assert abs(anns[1].visibility - 0.5) < 0.02, anns[1].visibility
    assert anns[2].visibility == 1.0
    m1, m2 = decode_rle(anns[1].rle), decode_rle(anns[2].rle)
    assert not (m1 & m2).any()
    assert (m1 == (frame.instance == 1)).all() and (m2 == (frame.instance == 2)).all()
    # The visible part is inside the unoccluded (rendered alone) mask.
    assert not (m1 & ~frame.unoccluded[1]).any()
    assert set(np.unique(frame.instance)) == {0, 1, 2}


def test_floor_occludes_but_is_never_labeled(renderer, library):
    cam = camera([0.5, 0.0, 0.08], [0.0, 0.0, 0.0])
    sc = scene([("cube", [0.0, 0.0, 0.0], None, 1.0)], cam)  # half sunk into the floor
    frame = renderer.render(sc, library)
    (ann,) = annotate(sc, frame)
    assert 0.2 < ann.visibility < 0.8
    assert set(np.unique(frame.instance)) == {0, 1}
    # Every visible cube pixel unprojects to a point above the floor.
    vs, us = np.nonzero(frame.instance == 1)
    o, d, cos = _rays(cam, np.c_[us, vs].astype(float))
    pts = o + d * (frame.depth[vs, us] / cos)[:, None]
    assert pts[:, 2].min() > -2e-3
    # The floor has depth but id 0.
    assert ((frame.instance == 0) & (frame.depth > 0)).sum() > 1000


@pytest.mark.parametrize("shadow_filter", ["bilinear", "pcf3x3"])
def test_shadows_and_bounds_under_numpy2(renderer, library, shadow_filter):
    """pyrender 0.1.45 called np.infty (gone in NumPy 2), breaking Mesh.bounds and shadows.
    Both shadow filters (simgen's 4-read bilinear one and pyrender's 3x3 PCF) are exact."""
    assert int(np.__version__.split(".")[0]) >= 2
    from simgen.geometry import look_at
    from simgen.spec import LightSpec

    # Light travelling along (1, 0, -1): the cube's shadow falls on the floor at x in (0.035, 0.105].
    light_pose = look_at([-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]) @ np.diag([1, -1, -1, 1])
    light = LightSpec("directional", light_pose, np.ones(3, np.float32), 3.0)
    cam = camera([0.0, -0.6, 0.6], [0.05, 0.0, 0.0])
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0)], cam, lights=(light,))
    renderer._load(sc, library)
    b = renderer._scene.bounds
    assert np.isfinite(b).all() and b[1, 2] == pytest.approx(0.07, abs=1e-6)
    renderer.set_shadow_filter(shadow_filter)
    renderer.shadows = False
    lit = renderer.render(sc, library).rgb.astype(float)
    renderer.shadows = True
    try:
        shadowed = renderer.render(sc, library).rgb.astype(float)
    finally:
        renderer.shadows = False
    # Unproject every floor pixel; the analytic shadow of the cube is x in [-0.035, 0.105],
    # |y| <= 0.035. Well inside it the floor is darker; well outside nothing changes (no
    # acne, no tiled copies of the shadow map).
    frame = renderer.render(sc, library)
    vs, us = np.nonzero((frame.instance == 0) & (frame.depth > 0))
    o, d, cos = _rays(cam, np.c_[us, vs].astype(float))
    p = o + d * (frame.depth[vs, us] / cos)[:, None]
    assert np.abs(p[:, 2]).max() < 1e-3  # they are floor points
    inside = (p[:, 0] > -0.025) & (p[:, 0] < 0.095) & (np.abs(p[:, 1]) < 0.025)
    outside = (p[:, 0] < -0.05) | (p[:, 0] > 0.12) | (np.abs(p[:, 1]) > 0.05)
    diff = lit[vs, us].mean(axis=1) - shadowed[vs, us].mean(axis=1)
    assert inside.sum() > 50 and outside.sum() > 1000
    assert (diff[inside] > 0.3 * lit[vs[inside], us[inside]].mean(axis=1)).mean() > 0.95
    assert np.abs(diff[outside]).max() <= 2


def test_a_new_gl_context_forgets_old_uniform_locations(library):
    """simgen remembers shader uniform locations per GL program id. A new GL context numbers
    its programs from the start again, in the order the scene needs them: here program 6 is
    the untextured mesh program with the cube, the textured one with the duck. Locations
    remembered from the duck's context must not be used in the cube's next one."""
    import simgen.render as render

    cam = camera([0.0, -0.6, 0.6], [0.05, 0.0, 0.0])
    cube = scene([("cube", [0.0, 0.0, 0.035], None, 1.0)], cam)
    duck = scene([("duck", [0.08, 0.05, 0.0], None, 1.0)], cam)
    images = []
    for sc in (cube, duck, cube):
        render._UNIFORM_LOCATIONS.clear() if sc is duck else None  # the duck's context remembers first
        r = render.PyrenderRenderer(320, 240)
        try:
            images.append(r.render(sc, library).rgb)
        finally:
            r.close()
    assert (images[0] == images[2]).all()


def test_one_pass_unoccluded_masks_equal_solo_renders(renderer, library):
    """The OR-combined pass gives, bit for bit, the mask of each object rendered alone."""
    from simgen.render import encode_id

    rng = np.random.default_rng(3)
    objs = []
    for k, asset in enumerate(["cube", "duck", "sphere", "mug", "cone", "teddy", "jenga", "bunny"]):
        R = trimesh.transformations.random_rotation_matrix(rng.random(3))[:3, :3]
        objs.append((asset, [rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06), 0.04 + 0.02 * k], R, 1.0))
    sc = scene(objs, camera([0.3, -0.3, 0.5], [0.0, 0.0, 0.05]))
    frame = renderer.render(sc, library)
    nodes = renderer._load(sc, library)
    for i, node in nodes.items():
        solo, _ = renderer._seg({node: encode_id(i)})
        assert ((solo == i) == frame.unoccluded[i]).all(), i
        assert not ((frame.instance == i) & ~frame.unoccluded[i]).any()
    assert sum(m.sum() for m in frame.unoccluded.values()) > sum((frame.instance > 0).ravel())  # overlaps exist


def test_single_sample_seg_pass_equals_pyrenders_resolved_pass(renderer, library, monkeypatch):
    """simgen draws SEG passes straight into the single-sample framebuffer; pyrender's own
    path draws them multisampled and resolves. Same ids everywhere, same depth up to
    pyrender's float32 linearisation (~1e-4 m at these distances)."""
    rng = np.random.default_rng(5)
    objs = [(a, [rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08), 0.04], None, 1.0)
            for a in ["cube", "duck", "sphere", "mug", "teddy"]]
    sc = scene(objs, camera([0.35, -0.3, 0.45], [0.0, 0.0, 0.03]))
    ours = renderer.render(sc, library, unoccluded=False)
    inner = renderer._r._renderer
    for name in ("_configure_forward_pass_viewport", "_read_main_framebuffer"):  # pyrender's originals
        monkeypatch.setattr(inner, name, getattr(type(inner), name).__get__(inner))
    theirs = renderer.render(sc, library, unoccluded=False)
    assert (ours.instance == theirs.instance).all() and len(np.unique(ours.instance)) == 6
    assert ((ours.depth > 0) == (theirs.depth > 0)).all()
    assert np.abs(ours.depth - theirs.depth).max() < 2e-4


def test_split_bits_boxes_and_in_frame_masks():
    """The OR pass's bit planes -> per-object in-frame masks and canvas crops, against the
    whole-canvas computation, for objects inside, straddling and outside the frame."""
    from simgen.render import _split_bits

    H, W, (l, t, w, h) = 60, 80, (10, 5, 50, 40)  # the frame's place on the canvas
    bits = np.zeros((H, W), np.uint32)
    rects = {0: (12, 8, 20, 20), 1: (0, 0, 15, 12), 2: (65, 50, 80, 60), 3: (30, 20, 70, 58), 5: (40, 30, 41, 31)}
    for k, (x0, y0, x1, y1) in rects.items():
        bits[y0:y1, x0:x1] |= np.uint32(1 << k)
    bits[33, 45] |= np.uint32(1 << 3)  # a lone pixel: crops follow the true extent
    out = _split_bits(bits, [10, 11, 12, 13, 14, 15], (l, t, w, h))
    for k, i in enumerate([10, 11, 12, 13, 14, 15]):
        full = (bits & np.uint32(1 << k)) != 0
        inside, (crop, x0, y0) = out[i]
        assert inside.shape == (h, w) and inside.flags.f_contiguous
        assert (inside == full[t:t + h, l:l + w]).all(), i
        if not full.any():
            assert crop.size == 0
            continue
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        assert (x0, y0) == (cols[0] - l, rows[0] - t)
        assert (crop == full[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]).all()


def test_visible_mask_searches_the_whole_frame_when_the_box_misses_pixels():
    from simgen.annotate import _visible_mask

    inst = np.zeros((30, 40), np.int32)
    inst[5:10, 5:10] = 3
    inst[20, 30] = 3  # outside the box given below
    right = _visible_mask(inst, 3, 26, (np.ones((20, 30), bool), 0, 0))
    assert right.flags.f_contiguous and (right == (inst == 3)).all()
    short = _visible_mask(inst, 3, 26, (np.ones((10, 10), bool), 2, 2))
    assert (short == (inst == 3)).all()
    assert (_visible_mask(inst, 3, 26, None) == (inst == 3)).all()


def test_rle_from_a_column_band_equals_pycocotools_on_the_whole_mask():
    """encode_rle(mask, cols) finds the runs within the object's columns only: the same COCO
    string as pycocotools encoding the whole frame, for blobs anywhere (edges and corners
    included), bands wider than the blob, empty masks, full masks and C-ordered masks."""
    from simgen.annotate import encode_rle

    rng = np.random.default_rng(11)
    H, W = 48, 64
    cases = [np.zeros((H, W), bool), np.ones((H, W), bool)]
    for _ in range(200):
        m = np.zeros((W, H), bool).T  # Fortran-ordered, like the pipeline's masks
        y0, x0 = rng.integers(0, H), rng.integers(0, W)
        y1, x1 = rng.integers(y0, H) + 1, rng.integers(x0, W) + 1
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.choice([0.3, 0.9, 1.0])
        cases.append(m)
    cases.append(np.ascontiguousarray(cases[-1]))
    corner = np.zeros((H, W), bool)
    corner[0, 0] = corner[-1, -1] = True
    cases.append(corner)
    for m in cases:
        whole = encode_rle(m)
        cols = np.flatnonzero(m.any(axis=0))
        tight = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
        assert encode_rle(m, tight) == whole
        assert encode_rle(m, (tight[0] - 3, tight[1] + 5)) == whole  # clipped to the frame
        assert encode_rle(m, (0, W)) == whole


def _pixel_to_world(cam, u, v, z_world):
    """Point where the ray through pixel (u, v) meets the plane z = z_world."""
    o, d, _ = _rays(cam, np.array([[u, v]], float))
    t = (z_world - o[0, 2]) / d[0, 2]
    return o[0] + t * d[0]


def test_truncation_of_an_object_half_outside_the_frame(renderer, library):
    cam = camera([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    centre = _pixel_to_world(cam, -0.5, cam.K[1, 2], 0.04)  # on the frame's left edge
    sc = scene([("sphere", centre, None, 1.0), ("sphere", [0.0, 0.0, 0.04], None, 1.0)], cam)
    frame = renderer.render(sc, library)
    a, inside = sorted(annotate(sc, frame), key=lambda x: x.instance_id)
    assert abs(a.truncation - 0.5) < 0.03, a.truncation
    assert inside.truncation == 0.0 and inside.amodal_bbox == inside.bbox
    x, y, w, h = a.bbox
    ax, ay, aw, ah = a.amodal_bbox
    assert x == 0 and ax < 0 and abs(aw - 2 * w) <= 3  # the box continues past the edge
    assert ax + aw == x + w and (ay, ah) == (y, h)  # and shares the in-frame edges exactly
    assert (decode_rle(a.amodal_rle) == frame.unoccluded[1]).all()


def test_difficulty_and_filters(renderer, library):
    from omegaconf import OmegaConf

    from simgen.annotate import difficulty
    from simgen.config import AnnotateConfig

    cfg = OmegaConf.structured(AnnotateConfig)
    assert difficulty(50, 0.9, 0.0, cfg.difficulty) == "easy"
    assert difficulty(50, 0.6, 0.0, cfg.difficulty) == "moderate"
    assert difficulty(30, 0.9, 0.4, cfg.difficulty) == "hard"
    assert difficulty(10, 0.9, 0.0, cfg.difficulty) == "beyond_hard"
    cam = camera([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0), ("brick", [0.12, 0.0, 0.30], None, 2.0)], cam)
    frame = renderer.render(sc, library)
    cfg.min_visibility = 0.6
    anns = {a.instance_id: a for a in annotate(sc, frame, cfg)}
    assert anns[1].ignore and not anns[2].ignore
    assert anns[1].difficulty == "beyond_hard" and anns[1].bbox[3] < 25  # 10 px tall: below "hard"
    assert anns[2].difficulty == "easy"
    cfg.filtered = "drop"
    assert [a.instance_id for a in annotate(sc, frame, cfg)] == [2]


def test_closing_one_renderer_leaves_the_others_working(renderer, library):
    """pyrender's delete() terminates the process-wide EGL display; ours must not. And a
    closed renderer collected later must not delete GL names in the context current then (it
    deleted its shadow framebuffer's name a second time: the other's main framebuffer)."""
    import gc

    from simgen.render import PyrenderRenderer

    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0)], camera([0.0, -0.4, 0.4], [0.0, 0.0, 0.0]))
    before = renderer.render(sc, library).instance.copy()
    other = PyrenderRenderer(64, 48)  # with shadows: it makes a shadow framebuffer
    other.render(replace_camera(sc, 64, 48), library)
    inner = other._r._renderer
    assert inner._shadow_fb is not None
    other.close()
    del other
    import pyrender.renderer

    deleted = []
    real = pyrender.renderer.glDeleteFramebuffers
    pyrender.renderer.glDeleteFramebuffers = lambda n, names: deleted.append(list(names))
    try:
        inner.__del__()  # what Python's collection of it runs, with the shared context current
    finally:
        pyrender.renderer.glDeleteFramebuffers = real
    assert deleted == []
    del inner
    PyrenderRenderer(64, 48, shadows=False)  # dropped without close(): garbage collected
    gc.collect()
    assert (renderer.render(sc, library).instance == before).all()


def replace_camera(sc, w, h):
    from dataclasses import replace

    return replace(sc, camera=camera([0.0, -0.4, 0.4], [0.0, 0.0, 0.0], width=w, height=h))


def test_shadows_can_be_switched_off_per_light(renderer, library):
    from dataclasses import replace

    from simgen.geometry import look_at
    from simgen.spec import LightSpec

    pose = look_at([-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]) @ np.diag([1, -1, -1, 1])
    on = LightSpec("directional", pose, np.ones(3, np.float32), 3.0, shadows=True)
    off = replace(on, shadows=False)
    cam = camera([0.0, -0.6, 0.6], [0.05, 0.0, 0.0])
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0)], cam, lights=(on,))
    renderer.shadows = False
    lit = renderer.render(sc, library).rgb.astype(float)
    renderer.shadows = True
    shadowed = renderer.render(sc, library).rgb.astype(float)
    unshadowed = renderer.render(replace(sc, lights=(off,)), library).rgb.astype(float)
    again = renderer.render(sc, library).rgb.astype(float)  # and back on
    renderer.shadows = False
    assert np.abs(unshadowed - lit).max() <= 2 and np.abs(shadowed - lit).max() > 50
    assert (again == shadowed).all()


def test_absent_lights_shadow_samplers_read_one_dummy_map(renderer, library, monkeypatch):
    """The shadow samplers of lights a scene lacks point at one dummy shadow map, whatever an
    earlier scene with more lights bound there (llvmpipe compiles a shader variant per
    combination of sampler states: left alone, a varied run recompiled every ~50 images).
    The dummy is never read: pyrender's own lighting binding gives the same pixels."""
    from OpenGL import GL

    from simgen.geometry import look_at
    from simgen.spec import LightSpec

    monkeypatch.setattr(renderer, "shadows", True)
    down = np.diag([1, -1, -1, 1])
    lights = lambda n_dir, n_spot: tuple(  # noqa: E731
        [LightSpec("directional", look_at([0.5, 0.3 * k, 2.0], [0, 0, 0]) @ down, np.ones(3, np.float32), 1.0)
         for k in range(n_dir)] +
        [LightSpec("spot", look_at([0.4 * k - 0.3, 0.5, 1.5], [0, 0, 0]) @ down, np.ones(3, np.float32), 3.0)
         for k in range(n_spot)])
    objs = [("cube", [0.0, 0.0, 0.035], None, 1.0), ("duck", [0.12, 0.05, 0.0], None, 1.0)]
    cam = camera([0.4, -0.35, 0.45], [0.0, 0.0, 0.03])
    renderer.render(scene(objs, cam, lights(3, 2)), library, unoccluded=False)
    few = scene(objs, cam, lights(1, 0))
    ours = renderer.render(few, library, unoccluded=False)
    checked = 0
    for program in renderer._r._renderer._program_cache._program_cache.values():
        pid = program._program_id
        for name, used in [("directional_lights[{}].shadow_map", 1), ("spot_lights[{}].shadow_map", 0)]:
            for k in range(4):
                loc = GL.glGetUniformLocation(pid, name.format(k))
                if loc < 0:
                    continue
                value = np.zeros(1, np.int32)
                GL.glGetUniformiv(pid, loc, value)
                unit = int(value[0])
                assert (unit == renderer._dummy_unit) == (k >= used), (name.format(k), unit)
                checked += 1
    assert checked >= 8  # the shadowed mesh program(s) were inspected
    inner = renderer._r._renderer
    monkeypatch.setattr(inner, "_bind_lighting", type(inner)._bind_lighting.__get__(inner))
    theirs = renderer.render(few, library, unoccluded=False)
    assert np.array_equal(ours.rgb, theirs.rgb)


def test_exact_canvas_margins_never_clip_a_silhouette():
    """The unoccluded pass's canvas is grown only where a silhouette can reach past the
    frame (none at all when every object is inside). Against a canvas 4 px larger on every
    side, every object's amodal crop is the same, on scenes inside the frame and on scenes
    turned so an object straddles the border."""
    from simgen.config import compose
    from simgen.pipeline import Pipeline

    seen = {"zero": 0, "grown": 0, "truncated": 0}
    for trunc in (0.0, 1.0):
        cfg = compose(["camera.width=160", "camera.height=120", "objects.count=6", "render.shadows=false",
                       f"edge_cases.truncation={{p:{trunc}}}", "seed=11"])
        pipe = Pipeline(cfg)
        r = pipe.renderer
        for i in range(6):
            s = pipe.make(i)
            margins = r._canvas_margins(s.scene, pipe.all_assets, float(cfg.annotate.amodal_canvas))
            seen["zero" if not any(margins) else "grown"] += 1
            nodes = {k: n for k, n in r._load(s.scene, pipe.all_assets).items() if k >= 1}
            wide = r._unoccluded(nodes, tuple(m + 4 for m in margins))
            assert sorted(wide) == sorted(s.frame.amodal)
            for k, (inside, (crop, x0, y0)) in wide.items():
                ours, ox, oy = s.frame.amodal[k]
                assert (ox, oy) == (x0, y0) and ours.shape == crop.shape and (ours == crop).all(), (trunc, i, k)
                assert (s.frame.unoccluded[k] == inside).all()
                seen["truncated"] += bool(crop.size) and (x0 < 0 or y0 < 0 or x0 + crop.shape[1] > 160
                                                          or y0 + crop.shape[0] > 120)
        pipe.close()
    assert min(seen.values()) > 0, seen
