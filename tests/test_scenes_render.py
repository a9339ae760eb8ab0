"""Templates, assets, physics and randomizers through the renderer."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import camera, scene

from simgen.annotate import annotate
from simgen.config import compose
from simgen.pipeline import Pipeline
from simgen.spec import TextureSpec

SMALL = ["camera.width=160", "camera.height=120"]


@pytest.fixture(scope="module")
def pipelines():
    """One pipeline (GL context) per template, created lazily, shared by the tests."""
    made = {}

    def get(template, *extra):
        key = (template, extra)
        if key not in made:
            made[key] = Pipeline(compose([f"scene={template}", *SMALL, *extra]))
        return made[key]

    yield get
    for p in made.values():
        p.close()


def test_every_builtin_asset_loads_settles_and_renders(renderer, library):
    from simgen.physics import PhysicsWorld

    world = PhysicsWorld()
    cfg = compose([]).physics
    for name in library.names:
        sc = scene([(name, [-0.06, 0.0, 0.15], None, 1.0), (name, [0.08, 0.02, 0.3], None, 1.0)],
                   camera([0.0, -0.6, 0.5], [0.0, 0.0, 0.0]))
        settled, rep = world.settle(sc, library, cfg)
        assert rep.converged and rep.valid, (name, rep)
        for o in settled.objects:  # resting on the floor: lowest point at z = 0 (within 1 cm)
            v = library.visual_mesh(name).vertices * o.scale
            z = (v @ o.pose[:3, :3].T + o.pose[:3, 3])[:, 2].min()
            assert -0.01 < z < 0.01, (name, z)
        frame = renderer.render(settled, library)
        assert {a.instance_id for a in annotate(settled, frame)} == {1, 2}, name
    world.close()


@pytest.mark.parametrize("template", ["tabletop", "bin", "shelf"])
def test_physics_leaves_objects_at_rest_on_their_support(pipelines, template):
    pipe = pipelines(template)
    for i in range(3):
        sc, rep = pipe.sample_and_settle(i)
        assert rep.valid, (template, i, rep)
        assert rep.max_linear_velocity < 0.01 and rep.max_angular_velocity < 0.1
        if template == "shelf":
            tops = [0.0] + [k * 0.3 + 0.02 for k in range(1, 3)]
            for o in sc.objects:
                v = pipe.all_assets.visual_mesh(o.asset).vertices * o.scale
                z = (v @ o.pose[:3, :3].T + o.pose[:3, 3])[:, 2].min()
                assert min(abs(z - t) for t in tops) < 0.01, (i, o.asset, z)


@pytest.mark.parametrize("template", ["tabletop", "bin", "flying", "shelf", "fixed"])
def test_templates_render_labeled_images(pipelines, template):
    pipe = pipelines(template)
    for i in range(2):
        s = pipe.make(i)
        assert len(s.annotations) >= 1, template
        inst = s.frame.instance
        assert set(np.unique(inst).tolist()) - {0} == {a.instance_id for a in s.annotations}
        assert all(a.instance_id >= 1 for a in s.annotations)


def test_background_never_touches_labels(pipelines):
    pipe = pipelines("tabletop", "background.kind=solid")
    sc, _ = pipe.sample_and_settle(0)
    r = pipe.renderer
    a = r.render(sc, pipe.all_assets)
    noise = TextureSpec("noise", np.array([[0.1, 0.8, 0.2], [0.9, 0.1, 0.5]], np.float32), scale=6, seed=3)
    b = r.render(replace(sc, background=noise, floor_enabled=False), pipe.all_assets)
    c = r.render(replace(sc, floor_enabled=False), pipe.all_assets)
    assert (b.instance == c.instance).all() and (b.depth == c.depth).all()
    empty = c.depth == 0
    assert empty.any()
    grown = empty.copy()  # pixels next to empty ones may blend (antialiasing)
    grown[1:] |= empty[:-1]
    grown[:-1] |= empty[1:]
    grown[:, 1:] |= empty[:, :-1]
    grown[:, :-1] |= empty[:, 1:]
    # Elsewhere RGB is unchanged, but for pixels whose centre is covered while a sub-pixel
    # gap lets some MSAA samples see the background (under 1%).
    changed = (b.rgb != c.rgb).any(axis=2) & ~grown
    assert changed.sum() <= 0.01 * (~grown).sum()
    assert (b.rgb[empty] != c.rgb[empty]).any()
    assert (a.instance[a.instance > 0] > 0).all()


def test_textured_slots_share_one_mesh_and_parked_slots_draw_nothing(renderer, library):
    """Own-coloured assets (textured duck and jenga) share one mesh across instance slots;
    slots parked while their mesh is visible must leave no trace in RGB, depth or ids."""
    renderer.shadows = True  # parked slots must cast no shadow either (the fixture resets it)
    cam = camera([0.0, -0.5, 0.45], [0.0, 0.0, 0.02])
    one = scene([("duck", [0.05, 0.0, 0.03], None, 1.0), ("jenga", [-0.08, 0.02, 0.03], None, 1.0)], cam)
    first = renderer.render(one, library)
    many = scene([("duck", [0.05, 0.0, 0.03], None, 1.0), ("duck", [-0.1, 0.1, 0.03], None, 1.0),
                  ("duck", [0.12, 0.12, 0.03], None, 1.0), ("jenga", [-0.08, 0.02, 0.03], None, 1.0),
                  ("jenga", [0.0, -0.12, 0.03], None, 1.0)], cam)
    frame = renderer.render(many, library)
    assert {a.instance_id for a in annotate(many, frame)} == {1, 2, 3, 4, 5}
    for asset in ("duck", "jenga"):
        pool = renderer._pool[library.assets[asset]]
        assert len(pool) >= {"duck": 3, "jenga": 2}[asset] and len({id(m) for m, _, _ in pool}) == 1
    again = renderer.render(one, library)  # the extra slots are parked now, their mesh visible
    assert np.array_equal(again.rgb, first.rgb) and np.array_equal(again.instance, first.instance)
    assert np.array_equal(again.depth, first.depth)


def test_distractors_occlude_but_are_not_labeled(renderer, library):
    from simgen.spec import ObjectSpec

    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0)], camera([0.0, 0.0, 1.0], [0.0, 0.0, 0.0]))
    d = ObjectSpec(instance_id=-1, asset="brick", category="brick",
                   pose=np.array([[1, 0, 0, 0.12], [0, 1, 0, 0], [0, 0, 1, 0.3], [0, 0, 0, 1.0]]),
                   scale=np.array([2.0, 2.0, 2.0]), color=np.array([0.2, 0.2, 0.9, 1.0], np.float32))
    frame = renderer.render(replace(sc, objects=sc.objects + (d,)), library)
    (ann,) = annotate(replace(sc, objects=sc.objects + (d,)), frame)
    assert ann.instance_id == 1 and abs(ann.visibility - 0.5) < 0.02
    assert set(np.unique(frame.instance).tolist()) == {0, 1}


def test_procedural_textures_show_on_objects(renderer, library):

    base = scene([("cube", [0.0, 0.0, 0.035], None, 3.0)], camera([0.0, 0.0, 0.6], [0.0, 0.0, 0.0]))
    o = base.objects[0]
    spreads = {}
    for kind in ("none", "checker", "stripes", "noise"):
        tex = None if kind == "none" else TextureSpec(kind, np.array([[0.9, 0.9, 0.9], [0.1, 0.1, 0.1]], np.float32),
                                                      scale=20, seed=1)
        frame = renderer.render(replace(base, objects=(replace(o, texture=tex),)), library)
        px = frame.rgb[frame.instance == 1].astype(float).mean(axis=1)
        spreads[kind] = px.std()
    assert all(spreads[k] > 3 * spreads["none"] for k in ("checker", "stripes", "noise")), spreads


def test_broken_physics_is_detected_and_resampled(library):
    """Overlapping starts blow apart, a floor-less drop falls away: both are caught, and
    the pipeline resamples a bounded number of times."""
    from simgen.physics import PhysicsWorld

    world = PhysicsWorld()
    cfg = compose(["physics.max_steps=1"]).physics  # look right after the start
    sc = scene([("cube", [0.0, 0.0, 0.035], None, 1.0), ("cube", [0.04, 0.0, 0.035], None, 1.0)],
               camera([0.0, -0.6, 0.5], [0.0, 0.0, 0.0]))  # overlapping by 3 cm
    _, rep = world.settle(sc, library, cfg)
    assert set(rep.interpenetrating) == {1, 2} and not rep.valid, rep
    far = replace(sc, objects=(replace(sc.objects[0], pose=np.array(
        [[1, 0, 0, 3.0], [0, 1, 0, 0], [0, 0, 1, 0.035], [0, 0, 0, 1.0]])),))
    _, rep = world.settle(far, library, compose([]).physics)  # beyond the 4 m floor's edge
    assert rep.fell_off == (1,) and not rep.valid
    world.close()
    pipe = Pipeline(compose(SMALL + ["physics.max_steps=20", "physics.max_tries=3"]))  # never settles
    sc, rep = pipe.sample_and_settle(0)
    assert rep.attempts == 3 and not rep.converged and sc.attempt == 2


def test_scene_without_objects_renders(pipelines):
    pipe = pipelines("tabletop", "objects.count=[0,1]")  # (a constant 0 is refused: no labeled object ever)
    s = pipe.make(next(i for i in range(50) if not pipe.sample(i).labeled))
    assert s.annotations == [] and (s.frame.instance == 0).all() and (s.frame.depth > 0).any()


def test_image_folders_for_backgrounds_and_textures(tmp_path):
    from PIL import Image

    from simgen.errors import AssetError, ConfigError

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 48), (220, 20, 20)).save(folder / "red.png")
    Image.new("RGB", (40, 40), (220, 20, 20)).save(folder / "red2.jpg")
    pipe = Pipeline(compose(SMALL + ["scene=flying", "background.kind=image", f"background.image_dir={folder}",
                                     "materials.texture=image", f"materials.texture_dir={folder}",
                                     "distractors.count=0"]))
    s = pipe.make(0)
    empty = s.frame.depth == 0
    assert empty.any() and (np.abs(s.frame.rgb[empty].astype(int) - [220, 20, 20]).max(axis=1) <= 1).mean() > 0.95
    pipe.close()
    (tmp_path / "none").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        Pipeline(compose(SMALL + ["background.kind=image", f"background.image_dir={tmp_path / 'none'}"])).sample(0)
    with pytest.raises(ConfigError, match="background.image_dir"):
        Pipeline(compose(SMALL + ["background.kind=image"])).sample(0)
    (folder / "broken.png").write_bytes(b"not an image")
    bad = Pipeline(compose(SMALL + ["scene=flying", "background.kind=image", f"background.image_dir={folder}"]))
    with pytest.raises(AssetError, match="broken.png"):
        for i in range(12):
            bad.make(i)


def test_unreadable_texture_or_background_images_fail_before_the_first_image(tmp_path):
    """A 0-byte texture, or a background folder whose images are all corrupt, is one line
    naming the file, exit non-zero, before any image is made."""
    from conftest import run_cli
    from PIL import Image

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    Image.new("RGB", (32, 32), (20, 200, 20)).save(good / "g.png")
    (good / "zero.jpg").write_bytes(b"")
    (bad / "a.png").write_bytes(b"\x89PNG garbage")
    (bad / "b.jpg").write_bytes(b"\xff\xd8 nope")
    for key, folder, needle in (("materials.texture_dir", good, "1 of 2 files cannot be read as images"),
                                ("background.image_dir", bad, "2 of 2 files cannot be read")):
        out = tmp_path / f"out-{key}"
        r = run_cli("num_images=2", "camera.width=160", "camera.height=120", f"{key}={folder}", f"output_dir={out}")
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and needle in lines[0] and key in lines[0], r.stderr
        assert not out.exists()
