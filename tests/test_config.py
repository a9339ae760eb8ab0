"""Config composition and the one-line errors for bad values (no rendering)."""
import pytest

from simgen.config import compose
from simgen.distributions import check_range, sample_float, sample_int
from simgen.errors import ConfigError


def test_defaults_compose():
    cfg = compose([])
    assert cfg.num_images == 50 and cfg.camera.width == 640 and cfg.camera.height == 480
    assert cfg.scene_name == "tabletop"
    assert list(cfg.objects.asset_sets) == ["primitives", "pybullet"]


def test_overrides_win_over_scene():
    cfg = compose(["num_images=7", "seed=3", "output_dir=out/x", "workers=2", "camera.width=320",
                   "objects.count=[2,4]"])
    assert (cfg.num_images, cfg.seed, cfg.output_dir, cfg.workers) == (7, 3, "out/x", 2)
    assert cfg.camera.width == 320 and list(cfg.objects.count) == [2, 4]


@pytest.mark.parametrize("override,needle", [
    ("num_images=-5", "num_images must be a positive integer"),
    ("num_images=abc", "num_images"),
    ("num_images=0", "num_images"),
    ("camera.width=0", "camera.width"),
    ("camera.height=99999", "camera.height"),
    ("scene=nosuchscene", "unknown scene 'nosuchscene'"),
    ("nosuchkey=1", "unknown config key 'nosuchkey'"),
    ("camera.nosuch=1", "camera.nosuch"),
    ("objects.count=[5,2]", "objects.count: low 5 is greater than high 2"),
    ("objects.scale=fast", "objects.scale"),
    ("lights.count=[1,9]", "lights.count must be <= 4"),
    ("lights.types=[laser]", "lights.types"),
    ("workers=0", "workers must be >= 1"),
    ("seed=-1", "seed must be >= 0"),
    ("ray.max_pending=-1", "ray.max_pending must be >= 0"),
    ("camera.views_per_scene=0", "camera.views_per_scene must be an integer >= 1"),
    ("camera.views_per_scene=two", "camera.views_per_scene"),
    ("+no_such_key=1", "unknown config key 'no_such_key'"),
    ("+camera.lens=3", "unknown config key 'camera.lens'"),
    ("splits.train=1.5", "fractions in [0, 1] that sum to 1"),
    ("splits.val=0.2", "sum 1.2"),
    ("objects.count=0", "objects.count=0 puts no labeled object"),
    ("num_images=1e9", "num_images must be a whole number, got '1e9' (fix: num_images=100"),
    ("camera.width=wide", "camera.width must be a whole number, got 'wide'"),
    ("formats=[coco,bop]", "formats with bop need objects.scale=1"),
])
def test_bad_values_are_one_line_errors(override, needle):
    with pytest.raises(ConfigError) as info:
        compose([override])
    msg = str(info.value)
    assert needle in msg, msg
    assert "\n" not in msg


def test_several_views_need_objects_placed_in_the_world():
    with pytest.raises(ConfigError, match="objects.placement=float places them in front of one camera"):
        compose(["objects.placement=float", "camera.views_per_scene=2"])
    assert compose(["objects.placement=float"]).camera.views_per_scene == 1


def test_ranges():
    import numpy as np

    rng = np.random.default_rng(0)
    assert sample_float(2.5, rng) == 2.5
    vals = [sample_int([3, 5], rng) for _ in range(200)]
    assert set(vals) == {3, 4, 5}
    xs = np.array([sample_float([1.0, 2.0], rng) for _ in range(200)])
    assert xs.min() >= 1.0 and xs.max() < 2.0
    with pytest.raises(ConfigError):
        check_range("x", [1, 2, 3])
    with pytest.raises(ConfigError):
        check_range("x", True)


def test_config_view_is_a_plain_read_only_copy():
    """The pipeline reads a ConfigView (dict speed); it must hold exactly the resolved config."""
    import json

    from omegaconf import OmegaConf

    from simgen.config import config_view

    cfg = compose(["scene=bin", "edge_cases=mixed", "objects.count=[2,5]"])
    view = config_view(cfg)
    assert json.loads(json.dumps(view)) == OmegaConf.to_container(cfg, resolve=True)
    assert view.camera.width == cfg.camera.width and view["objects"]["count"] == (2, 5)
    assert config_view(view) is view
    with pytest.raises(AttributeError, match="read-only"):
        view.camera.width = 10
    with pytest.raises(TypeError, match="read-only"):
        view.objects["count"] = 3
    with pytest.raises(AttributeError):
        _ = view.camera.no_such_key


@pytest.mark.parametrize("override,key,kind", [("objects.coverage_size=abc", "objects.coverage_size", "a list"),
                                               ("formats=coco", "formats", "a list"),
                                               ("objects.class_weights=3", "objects.class_weights", "a mapping")])
def test_a_word_where_a_list_or_mapping_goes_is_one_line_naming_the_shape(override, key, kind):
    with pytest.raises(ConfigError) as e:
        compose([override])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{key} takes {kind}") and "fix:" in msg
