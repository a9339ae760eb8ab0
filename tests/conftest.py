"""Shared fixtures: one GL renderer per test process, hand-built scenes, CLI runner."""
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from simgen.geometry import intrinsics_from_fov, look_at, pose_matrix  # noqa: E402
from simgen.spec import CameraSpec, LightSpec, ObjectSpec, SceneSpec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIMGEN = os.path.join(os.path.dirname(sys.executable), "simgen")


@pytest.fixture(scope="session")
def library():
    from simgen.assets import AssetLibrary

    return AssetLibrary.from_sets(["primitives", "pybullet"])


@pytest.fixture()
def renderer():
    """The process's shared renderer, reset to the test defaults (shadows off)."""
    from simgen.render import shared_renderer

    return shared_renderer(320, 240, shadows=False)


def camera(eye, target, width=320, height=240, fov=50.0):
    return CameraSpec(width=width, height=height, K=intrinsics_from_fov(width, height, fov),
                      pose=look_at(eye, target), znear=0.01, zfar=30.0)


def scene(objects, cam, lights=None):
    """objects: list of (asset, position, R or None, scale). ids are 1..N in order."""
    objs = []
    for i, (asset, pos, R, s) in enumerate(objects):
        R = np.eye(3) if R is None else R
        objs.append(ObjectSpec(instance_id=i + 1, asset=asset, category=asset,
                               pose=pose_matrix(R, pos), scale=np.array([s, s, s], float),
                               color=np.array([0.8, 0.3, 0.2, 1.0], np.float32)))
    if lights is None:
        lights = (LightSpec("directional", look_at([0.5, 0.3, 2.0], [0, 0, 0]) @ np.diag([1, -1, -1, 1]),
                            np.ones(3, np.float32), 2.0),)
    return SceneSpec(index=0, seed=0, objects=tuple(objs), lights=tuple(lights), camera=cam)


def run_cli(*args, env=None, timeout=600, cwd=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([SIMGEN, *args], capture_output=True, text=True, timeout=timeout,
                          env=e, cwd=cwd or ROOT)


def run_ultralytics(body: str, tmp_path, timeout: int = 600) -> str:
    """Run ``body`` (Python) with Ultralytics offline and the CPU torchvision shim loaded, in
    a subprocess of its own (importing Ultralytics here would patch Pillow for every later
    test); returns its stdout, after asserting it exited 0."""
    code = ("import json, os, sys\n"
            "os.environ.update(YOLO_OFFLINE='1', YOLO_AUTOINSTALL='0')\n"
            f"sys.path.insert(0, {os.path.join(ROOT, 'examples')!r})\n"
            "import tv_cpu_shim; tv_cpu_shim.install()\n" + body)
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "ycfg"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout
