"""Presets (configs/preset/): each composes over every built-in scene, changes what it says it
changes, and makes a dataset that validates."""
import json

import pytest

from simgen.config import compose
from simgen.errors import SimGenError

SCENES = ["tabletop", "bin", "flying", "shelf"]


@pytest.mark.parametrize("preset", ["randomized", "realistic", "coverage"])
@pytest.mark.parametrize("scene", SCENES)
def test_a_preset_composes_over_every_scene(preset, scene):
    cfg = compose([f"scene={scene}", f"preset={preset}"])
    base = compose([f"scene={scene}"])
    assert cfg.scene_name == base.scene_name  # the scene stays what it is
    if preset == "randomized":
        assert cfg.objects.appearance == "randomize" and cfg.distractors.count == [2, 8]
    elif preset == "coverage":
        assert cfg.objects.placement == "coverage" and not cfg.floor.enabled and cfg.container.kind == "none"
    else:
        assert cfg.materials.texture == "none" and cfg.lights.shadow_probability == 1.0


def test_no_preset_is_the_scene_itself():
    assert compose(["preset=none"]) == compose([])


def test_an_unknown_preset_is_one_line_naming_the_choices():
    with pytest.raises(SimGenError, match=r"unknown preset 'dr'; available: coverage, none, randomized, realistic"):
        compose(["preset=dr"])


@pytest.mark.parametrize("preset", ["randomized", "realistic", "coverage"])
def test_a_preset_makes_a_valid_dataset(tmp_path, preset):
    from simgen.runner import run
    from simgen.validate import validate_dataset

    out = tmp_path / preset
    run(compose([f"preset={preset}", "num_images=3", "camera.width=128", "camera.height=96", "workers=1",
                 "progress=false", f"output_dir={out}"]))
    assert validate_dataset(str(out)) == []
    coco = json.load(open(out / "annotations.json"))
    assert coco["images"] and coco["annotations"]
