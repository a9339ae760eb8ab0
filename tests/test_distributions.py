"""The distribution syntax: values, bounds, errors, and stream alignment."""
import math

import numpy as np
import pytest

from simgen.distributions import check_choice, check_range, parse, sample
from simgen.errors import ConfigError


def draws(spec, n=4000, integer=False, seed=0):
    rng = np.random.default_rng(seed)
    return [sample(spec, rng, integer=integer) for _ in range(n)]


def test_constant_and_uniform():
    assert set(draws(2.5, 10)) == {2.5}
    x = np.array(draws([1.0, 3.0]))
    assert x.min() >= 1.0 and x.max() < 3.0 and abs(x.mean() - 2.0) < 0.05
    assert set(draws([3, 5], integer=True)) == {3, 4, 5}
    assert np.allclose(draws({"uniform": [1, 3]}, 50, seed=1), draws([1, 3], 50, seed=1))


def test_normal_and_truncation():
    x = np.array(draws({"normal": [1.0, 0.2]}))
    assert abs(x.mean() - 1.0) < 0.02 and abs(x.std() - 0.2) < 0.02
    t = np.array(draws({"normal": [1.0, 0.2], "min": 0.9, "max": 1.05}))
    assert t.min() >= 0.9 and t.max() <= 1.05
    assert t.mean() < 1.0  # more mass cut above than below
    assert set(draws({"normal": [2.0, 0.0]}, 5)) == {2.0}


def test_loguniform_is_uniform_in_log():
    x = np.log10(draws({"loguniform": [0.01, 10.0]}))
    assert x.min() >= -2 and x.max() <= 1 and abs(x.mean() - (-0.5)) < 0.05


def test_weighted_choice():
    x = draws({"choice": ["a", "b", "c"], "weights": [6, 3, 1]}, 10000)
    freq = {k: x.count(k) / len(x) for k in "abc"}
    assert abs(freq["a"] - 0.6) < 0.02 and abs(freq["b"] - 0.3) < 0.02 and abs(freq["c"] - 0.1) < 0.02
    assert set(draws({"choice": [1, 2]}, 100)) == {1, 2}


def test_every_kind_consumes_one_draw():
    """Pinning a value (or changing its kind) never shifts later draws of the same stream."""
    for spec in (3, [0, 1], {"normal": [0, 1]}, {"loguniform": [1, 2]}, {"choice": ["x", "y"]}):
        rng = np.random.default_rng(7)
        sample(spec, rng)
        assert rng.random() == pytest.approx(np.random.default_rng(7).random(2)[1])


@pytest.mark.parametrize("spec,needle", [
    ([3, 1], "low 3 is greater than high 1"),
    ({"normal": [1, -1]}, "std must be >= 0"),
    ({"gaussian": [1, 1]}, "exactly one of"),
    ({"uniform": [1, 2], "normal": [1, 1]}, "exactly one of"),
    ({"choice": ["a", "b"], "weights": [0, 0]}, "positive sum"),
    ({"choice": ["a", "b"], "weights": [1]}, "weights must be 2"),
    ({"choice": ["a"], "weights": [-1]}, "non-negative"),
    ({"loguniform": [0, 1]}, "0 < low"),
    ({"normal": [1, 1], "min": 2, "max": 1}, "min 2 is greater than max 1"),
    ("fast", "must be numeric"),
    ([1, 2, 3], "[low, high]"),
    (True, "must be a number"),
])
def test_bad_specs(spec, needle):
    with pytest.raises(ConfigError) as info:
        check_range("x.y", spec)
    assert needle in str(info.value) and "x.y" in str(info.value)


def test_bounds_checks():
    check_range("n", {"normal": [5, 1], "min": 1, "max": 9}, low=0, high=10)
    with pytest.raises(ConfigError, match="normal needs min"):
        check_range("n", {"normal": [5, 1]}, low=0)
    with pytest.raises(ConfigError, match="must be <= 4"):
        check_range("n", {"choice": [1, 5]}, high=4)
    with pytest.raises(ConfigError, match="integers"):
        check_range("n", 2.5, integer=True)
    with pytest.raises(ConfigError, match="must choose among"):
        check_choice("k", ["a", "z"], ("a", "b"))
    assert parse("k", {"choice": ["a", "b"], "weights": [1, 0]}).weights == (1.0, 0.0)
    assert math.isinf(parse("n", {"normal": [0, 1]}).support[1])


def test_cli_syntax_composes():
    from simgen.config import compose

    cfg = compose(["objects.scale={normal:[1.0,0.1],min:0.8,max:1.2}",
                   "lights.types={choice:[directional,spot],weights:[3,1]}",
                   "camera.fov_deg={loguniform:[30,70]}"])
    assert cfg.objects.scale["normal"] == [1.0, 0.1]
    with pytest.raises(ConfigError, match="objects.scale"):
        compose(["objects.scale={normal:[1.0,-0.1]}"])
