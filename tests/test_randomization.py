"""Scene sampling: each randomizer varies what it should and nothing else, pinned values are
honoured exactly, balanced classes, and resampling bounds. No rendering here."""
import numpy as np
import pytest

from simgen.assets import AssetLibrary
from simgen.config import compose
from simgen.errors import ConfigError
from simgen.pipeline import Pipeline
from simgen.scenes import object_count, objects_in_view, sample_scene
from simgen.textures import kelvin_to_rgb

LIB = AssetLibrary.from_sets(["primitives", "pybullet"])


def scene(overrides, index=0, seed=0):
    return sample_scene(compose(overrides), LIB, seed, index)


def parts(sc):
    """The scene split by factor, as comparable bytes."""
    obj = [(o.asset, o.scale.tobytes()) for o in sc.objects]
    poses = [o.pose.tobytes() for o in sc.objects]
    mats = [(None if o.color is None else o.color.tobytes(), o.metallic, o.roughness,
             None if o.texture is None else (o.texture.kind, o.texture.seed)) for o in sc.objects]
    lights = [(l.kind, l.pose.tobytes(), l.color.tobytes(), l.intensity) for l in sc.lights] + [sc.ambient]
    cam = (sc.camera.K.tobytes(), sc.camera.pose.tobytes())
    bg = (sc.floor_color.tobytes(), sc.background_color.tobytes(),
          None if sc.background is None else sc.background.kind)
    return {"objects": obj, "poses": poses, "materials": mats, "lights": lights, "camera": cam, "background": bg}


@pytest.mark.parametrize("override,changes", [
    ("camera.fov_deg=[20,80]", {"camera"}),
    ("camera.roll_deg=[-40,40]", {"camera"}),
    ("lights.count=[3,4]", {"lights"}),
    ("lights.temperature_k=[1500,2000]", {"lights"}),
    ("materials.roughness=[0.0,0.1]", {"materials"}),
    ("materials.texture=checker", {"materials"}),
    ("background.kind=noise", {"background"}),
    ("floor.value=[0.9,1.0]", {"background"}),
    ("objects.drop_height=[0.5,0.6]", {"poses"}),
    ("objects.spread_tries=1", {"poses"}),
    ("objects.scale=[1.5,2.0]", {"objects", "poses", "camera"}),  # bigger objects start higher, framed from farther
])
def test_one_randomizer_changes_only_its_factor(override, changes):
    seen = set()
    for index in range(4):
        a, b = parts(scene([], index)), parts(scene([override], index))
        differ = {k for k in a if a[k] != b[k]}
        assert differ <= changes, (override, differ)
        seen |= differ
    assert seen, override  # and it does change what it should


def test_drop_starts_never_overlap_and_spreading_lowers_them():
    """Start poses: bounding spheres disjoint (objects overlapping below start above them);
    trying more positions per object gives lower starts (shorter falls, fewer towers)."""
    from simgen.scenes import _radius

    mean_z = {}
    for tries in (1, 10):
        zs = []
        for index in range(12):
            sc = scene(["objects.count=12", f"objects.spread_tries={tries}"], index)
            centres = np.array([o.pose[:3, 3] for o in sc.objects])
            radii = np.array([_radius(LIB, o.asset) * o.scale[0] for o in sc.objects])
            gap = np.linalg.norm(centres[:, None] - centres[None], axis=2) - (radii[:, None] + radii[None])
            assert (gap[~np.eye(len(radii), dtype=bool)] > 0).all(), (tries, index)
            zs += list(centres[:, 2] - radii)  # lowest point of each start sphere
        mean_z[tries] = np.mean(zs)
    assert mean_z[10] < 0.8 * mean_z[1], mean_z


def test_spreading_keeps_shelf_levels_equally_likely():
    """The lowest start is measured above each object's own support: spreading must not
    pull objects down to the bottom shelf."""
    from simgen.scenes import _support_regions

    cfg = compose(["scene=shelf", "objects.spread_tries=10"])
    tops = sorted({float(r[2]) for r in _support_regions(cfg)})
    per_level = np.zeros(len(tops))
    for index in range(60):  # ~600 objects: a level's share is 1/3 +- 0.02
        for o in sample_scene(cfg, LIB, 0, index).objects:
            per_level[np.searchsorted(tops, o.pose[2, 3]) - 1] += 1
    share = per_level / per_level.sum()
    assert len(tops) == 3 and (np.abs(share - 1 / 3) < 0.065).all(), share  # biased: bottom 0.43


def test_pinned_values_are_honoured():
    sc = scene(["camera.fov_deg=40", "camera.roll_deg=0", "objects.scale=1.1", "objects.count=7",
                "lights.count=2", "lights.types=[spot]", "lights.temperature_k=6500",
                "lights.point_intensity=3.5", "lights.ambient=0.25", "materials.metallic=0.3",
                "materials.roughness=0.45"])
    assert len(sc.objects) == 7 and all(np.allclose(o.scale, 1.1) for o in sc.objects)
    assert sc.camera.K[1, 1] == pytest.approx(0.5 * 480 / np.tan(np.radians(20)))
    assert [l.kind for l in sc.lights] == ["spot", "spot"] and all(l.intensity == 3.5 for l in sc.lights)
    assert all(np.allclose(l.color, kelvin_to_rgb(6500)) for l in sc.lights) and sc.ambient == 0.25
    for o in sc.objects:
        if o.color is not None:
            assert (o.metallic, o.roughness) == (pytest.approx(0.3), pytest.approx(0.45))


def test_fixed_template_is_the_same_for_every_seed_and_index():
    cfg = compose(["scene=fixed"])
    ref = parts(sample_scene(cfg, LIB, 0, 0))
    for seed, index in [(1, 0), (5, 17), (123, 999)]:
        assert parts(sample_scene(cfg, LIB, seed, index)) == ref
    sc = sample_scene(cfg, LIB, 3, 3)
    assert [o.asset for o in sc.objects] == ["cube", "sphere", "cylinder", "duck", "brick"]
    assert np.allclose(sc.objects[0].pose[:3, 3], [0.0, 0.0, 0.035])
    assert np.allclose(sc.camera.pose[:3, 3], [0.45, -0.55, 0.5])


def test_balanced_mode_within_ten_percent():
    cfg = compose(["objects.balance=true", "objects.count=[3,15]"])
    counts = {}
    for i in range(200):
        for o in sample_scene(cfg, LIB, 0, i).objects:
            counts[o.category] = counts.get(o.category, 0) + 1
    mean = np.mean(list(counts.values()))
    assert set(counts) == set(LIB.categories)
    assert max(abs(c - mean) / mean for c in counts.values()) <= 0.10, counts
    # Counts come from their own stream: the same as without balancing.
    plain = compose(["objects.count=[3,15]"])
    assert all(object_count(cfg, 0, i) == object_count(plain, 0, i) for i in range(20))


def test_balanced_slots_cost_one_block_and_ignore_history(monkeypatch):
    """A shard far into a huge dataset pays for at most one block of counts, and an image's
    classes do not depend on what the process sampled before (workers, Ray, resume)."""
    import simgen.scenes as scenes

    cfg = compose(["objects.balance=true", "objects.count=[3,15]"])
    index = 10_000_000 + scenes.BALANCE_BLOCK - 2  # near the end of its block
    calls = []
    real = scenes.object_count
    monkeypatch.setattr(scenes, "_BALANCE", scenes._BalancedCounts())
    monkeypatch.setattr(scenes, "object_count", lambda *a: calls.append(a) or real(*a))
    cold = [o.asset for o in sample_scene(cfg, LIB, 0, index).objects]
    assert 0 < len(calls) < scenes.BALANCE_BLOCK
    for i in (index - 700, 5, index + 9, index - 1):  # other blocks, earlier images
        sample_scene(cfg, LIB, 0, i)
    assert [o.asset for o in sample_scene(cfg, LIB, 0, index).objects] == cold


def test_class_weights():
    cfg = compose(["objects.class_weights={duck:10.0}", "objects.count=10"])
    cats = [o.category for i in range(50) for o in sample_scene(cfg, LIB, 0, i).objects]
    share = cats.count("duck") / len(cats)
    assert 0.35 < share < 0.55  # 10 / (10 + 12 others) = 0.45
    cfg = compose(["objects.class_weights={cube:0.0}", "objects.count=10"])
    assert all(o.category != "cube" for i in range(30) for o in sample_scene(cfg, LIB, 0, i).objects)


def test_class_weights_naming_no_class_is_an_error_listing_the_classes():
    with pytest.raises(ConfigError, match=r"objects.class_weights names dcuk, which no asset has; classes: .*duck"):
        Pipeline(compose(["objects.class_weights={dcuk:5}"]))


def test_default_distractors_share_no_shape_with_any_class():
    """The built-in distractor set (clutter) has no asset whose shape is a labeled class of
    the built-in sets; a distractor set that shares shapes is refused unless asked for."""
    from simgen.assets import AssetLibrary

    clutter = AssetLibrary.from_sets(["clutter"])
    classes = AssetLibrary.from_sets(["primitives", "pybullet"])
    assert classes.shared_shapes(clutter) == [] and len(clutter.names) >= 6
    assert classes.shared_shapes(AssetLibrary.from_sets(["primitives"])) == sorted(
        AssetLibrary.from_sets(["primitives"]).names)
    for scene in ("tabletop", "flying", "bin", "shelf"):
        pipe = Pipeline(compose([f"scene={scene}", "distractors.count=[1,3]"]))
        assert set(pipe.distractors.names) == set(clutter.names)
        dis = [o for i in range(3) for o in pipe.sample(i).objects if o.instance_id < 0]
        assert dis and all(o.asset in clutter.names for o in dis)
    with pytest.raises(ConfigError, match="are also labeled classes"):
        Pipeline(compose(["distractors.count=2", "distractors.asset_sets=[primitives]"]))
    Pipeline(compose(["distractors.count=2", "distractors.asset_sets=[primitives]",
                      "distractors.share_class_shapes=true"]))


def test_declared_colours_are_kept_jittered_or_randomized_as_asked():
    """lego's declared yellow (the manifest's color:) stays yellow-ish under the default
    appearance=jitter, exact under keep, and any colour under randomize."""
    import colorsys

    def legos(*over):
        cfg = compose(["objects.count=12", "objects.asset_sets=[pybullet]", *over])
        return [o.color for i in range(12) for o in sample_scene(cfg, LIB, 0, i).objects if o.category == "lego"]

    jit, keep, rnd = legos(), legos("objects.appearance=keep"), legos("objects.appearance=randomize")
    assert min(len(jit), len(keep), len(rnd)) >= 5
    assert all(np.allclose(c, [1.0, 1.0, 0.4, 1.0]) for c in keep)
    hue = [colorsys.rgb_to_hsv(*c[:3])[0] for c in jit]
    assert len({tuple(c) for c in jit}) == len(jit) and all(abs(h - 1 / 6) <= 0.021 for h in hue)
    assert np.ptp([colorsys.rgb_to_hsv(*c[:3])[0] for c in rnd]) > 0.3  # any hue


def test_stable_poses_rest_on_a_face_over_the_centre_of_mass():
    """Each stable pose trimesh gives stands the hull on a face whose support polygon
    contains the centre of mass's projection: the definition of resting, checked directly."""
    import trimesh
    from scipy.spatial import ConvexHull, Delaunay

    lib = AssetLibrary.from_sets(["primitives", "pybullet"])
    assert lib.stable_poses("sphere") is None and lib.stable_poses("soccerball") is None  # no preferred pose
    for name in ("cube", "brick", "cone", "cylinder", "duck", "mug", "lego", "jenga", "teddy", "bunny"):
        rot, prob = lib.stable_poses(name)
        assert np.isclose(prob.sum(), 1.0) and (prob > 0).all()
        mesh = lib.visual_mesh(name)
        com = mesh.center_mass if mesh.is_watertight else trimesh.Trimesh(lib.hull_points(name)).convex_hull.center_mass
        for R in rot:
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(R), 1.0)
            pts = lib.hull_points(name) @ R.T
            base = pts[pts[:, 2] < pts[:, 2].min() + 1e-4][:, :2]
            c = (np.asarray(com) @ R.T)[:2]
            if len(base) >= 3 and np.linalg.matrix_rank(base - base[0], tol=1e-6) == 2:
                hull = Delaunay(base[ConvexHull(base).vertices])
                assert hull.find_simplex(c) >= 0 or np.min(np.linalg.norm(base - c, axis=1)) < 2e-3, name


def test_objects_start_upright_or_in_stable_poses_and_stay_there():
    """upright_share=1: every object that says which axis is up starts with it vertical, just
    above the floor, and a sparse scene settles with (nearly) all of them still upright."""
    cfg = compose(["objects.asset_sets=[pybullet]", "objects.count=3", "objects.upright_share=1",
                   "objects.stable_pose_share=0", "distractors.count=0"])
    pipe = Pipeline(cfg)
    start = settled = upright = 0
    for i in range(10):
        sc0 = pipe.sample(i)
        sc1, _ = pipe.sample_and_settle(i)
        for o0, o1 in zip(sc0.objects, sc1.objects):
            U = pipe.library.upright(o0.asset)
            if U is None:
                continue
            axis = U.T @ [0.0, 0.0, 1.0]  # the model's up axis
            start += (o0.pose[:3, :3] @ axis)[2] > 0.999
            lowest = (pipe.library.hull_points(o0.asset) * o0.scale[0] @ o0.pose[:3, :3].T)[:, 2].min() + o0.pose[2, 3]
            assert 0 <= lowest <= 0.0031  # set down a few mm above the floor, not dropped
            settled += 1
            upright += (o1.pose[:3, :3] @ axis)[2] > 0.8  # still standing (the teddy leans back ~25 deg)
    assert start == settled >= 20 and upright >= 0.9 * settled
    with pytest.raises(ConfigError, match="sum <= 1"):
        compose(["objects.upright_share=0.7", "objects.stable_pose_share=0.5"])


def test_distractors_are_unlabeled_and_separate():
    pipe = Pipeline(compose(["distractors.count=4", "objects.count=5"]))
    sc = pipe.sample(0)
    ids = sorted(o.instance_id for o in sc.objects)
    assert ids == [-4, -3, -2, -1, 1, 2, 3, 4, 5]
    assert len(sc.labeled) == 5


def test_camera_sees_enough_objects():
    base = ["objects.count=6", "physics.enabled=false", "camera.fov_deg=[14,20]", "camera.look_at_jitter=0.2"]
    pipe = Pipeline(compose(base))
    seen = [objects_in_view(pipe.sample_and_settle(i)[0].camera, pipe.sample(i).objects) for i in range(8)]
    assert min(seen) < 5  # without the constraint some views miss objects
    pipe = Pipeline(compose(base + ["camera.min_visible_objects=5", "camera.max_tries=50"]))
    for i in range(8):
        sc, _ = pipe.sample_and_settle(i)
        assert objects_in_view(sc.camera, sc.objects) >= 5
    # Impossible asks stop after max_tries instead of looping.
    pipe = Pipeline(compose(base + ["camera.min_visible_objects=7", "camera.max_tries=3"]))
    sc, _ = pipe.sample_and_settle(0)
    assert objects_in_view(sc.camera, sc.objects) <= 6


def test_template_distribution_can_change_shape_on_the_command_line():
    cfg = compose(["scene=bin", "objects.scale={normal:[1.0,0.1],min:0.5,max:1.5}", "objects.count=20"])
    assert dict(cfg.objects.scale) == {"normal": [1.0, 0.1], "min": 0.5, "max": 1.5}
    assert cfg.objects.count == 20


def test_bad_template_values():
    from simgen.errors import ConfigError

    with pytest.raises(ConfigError, match="objects.placement"):
        compose(["objects.placement=teleport"])
    with pytest.raises(ConfigError, match="container.kind=shelf"):
        compose(["objects.placement=shelf"])
    with pytest.raises(ConfigError, match="sweep"):
        compose(["seed=1,2"])
    with pytest.raises(ConfigError, match="texture_dir"):
        sample_scene(compose(["materials.texture=image"]), LIB, 0, 0)


def test_user_scene_file_in_any_folder(tmp_path):
    f = tmp_path / "my_scene.yaml"
    f.write_text("# @package _global_\nscene_name: mine\nobjects:\n  count: 2\n  scale: {normal: [1.0, 0.05], min: 0.9, max: 1.1}\n")
    cfg = compose([f"scene={f}", "seed=4"])
    assert cfg.scene_name == "mine" and cfg.objects.count == 2 and cfg.seed == 4
    assert len(sample_scene(cfg, LIB, 0, 0).objects) == 2
    from simgen.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        compose([f"scene={tmp_path / 'nope.yaml'}"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("objects: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        compose([f"scene={bad}"])


def test_resolution_randomization():
    from simgen.errors import ConfigError

    cfg = compose(["camera.resolution={choice:[[320,240],[480,270]],weights:[1,1]}", "camera.fov_deg=50"])
    sizes = {(sample_scene(cfg, LIB, 0, i).camera.width, sample_scene(cfg, LIB, 0, i).camera.height)
             for i in range(20)}
    assert sizes == {(320, 240), (480, 270)}
    sc = sample_scene(cfg, LIB, 0, 0)
    assert sc.camera.K[0, 2] == pytest.approx((sc.camera.width - 1) / 2)
    # the other camera draws do not depend on it
    plain = sample_scene(compose(["camera.fov_deg=50"]), LIB, 0, 0)
    assert np.allclose(plain.camera.pose, sc.camera.pose)
    with pytest.raises(ConfigError, match="camera.resolution"):
        compose(["camera.resolution=[640,480]"])
    with pytest.raises(ConfigError, match="16..8192"):
        compose(["camera.resolution={choice:[[640,4]]}"])


def test_noise_fields_stay_small_at_any_image_size(monkeypatch):
    """Noise backgrounds at 4K draw on fields at most NOISE_RES wide (the bank held ~2 GB per
    process at 1920x1080 when fields were image-sized); object tiles keep their own size."""
    from simgen import textures
    from simgen.spec import TextureSpec

    sizes = []
    real = textures._noise_bank
    monkeypatch.setattr(textures, "_noise_bank", lambda size, n: sizes.append(size) or real(size, n))
    spec = TextureSpec("noise", np.array([[0.1, 0.8, 0.2], [0.9, 0.1, 0.5]], np.float32), scale=6, seed=3)
    img = textures.background_image(spec, 3840, 2160)
    assert img.shape == (2160, 3840, 3) and img.dtype == np.uint8
    assert sizes == [textures.NOISE_RES]
    # still noise between the two colours: varied, smooth (neighbours close), not blocky
    assert img.std() > 10
    assert np.abs(np.diff(img.astype(int), axis=1)).mean() < 2
    tile = textures.texture_tile(spec)
    assert sizes[-1] == 256 and tile.shape == (256, 256, 3)
    assert (tile[0] != tile[-1]).any() and np.abs(tile[0].astype(int) - tile[-1].astype(int)).mean() < 8  # periodic


@pytest.mark.parametrize("kind", __import__("simgen.textures", fromlist=["PROCEDURAL"]).PROCEDURAL)
@pytest.mark.parametrize("scale", [2.0, 7.0])
def test_every_procedural_texture_tiles_without_a_seam_and_uses_both_colours(kind, scale):
    """A floor or object texture repeats its 256-px tile: the step across the wrap (last row ->
    first row, last column -> first column) is no larger than the steps between neighbouring
    rows or columns inside the tile (the largest of them for the axis-aligned patterns, whose
    cell edges fall on the wrap; the 90th percentile for the others); same seed, same bytes."""
    from simgen import textures
    from simgen.spec import TextureSpec

    colors = np.array([[0.8, 0.6, 0.3], [0.1, 0.2, 0.7]], np.float32)
    spec = TextureSpec(kind, colors, scale=scale, seed=11, angle_deg=25.0)
    tile = textures.texture_tile(spec).astype(np.int64)
    assert tile.shape == (256, 256, 3)
    assert np.array_equal(tile, textures.texture_tile(spec))
    for axis in (0, 1):
        inner = np.abs(np.diff(tile, axis=axis)).mean(axis=(1 - axis, 2))
        seam = np.abs(np.take(tile, 0, axis=axis) - np.take(tile, -1, axis=axis)).mean()
        limit = inner.max() if kind in ("checker", "stripes", "tiles") else np.percentile(inner, 90)
        assert seam <= 1.5 * limit + 1.0, (kind, axis, seam, limit)
    assert tile.std(axis=(0, 1)).max() > 5  # a pattern, not a flat colour
    bg = textures.background_image(spec, 320, 240)
    assert bg.shape == (240, 320, 3) and bg.dtype == np.uint8 and bg.std() > 5
