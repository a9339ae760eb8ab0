"""RGB bytes are a function of (config, seed, image index) alone: not of what the process
rendered before (image order, a resumed run, the images another worker took), of
llvmpipe's thread count, or of other load on the machine.

The bug these tests pin down: pyrender gives lights their shader array slots in the
iteration order of its light-node sets, and a Python set's iteration order depends on its
history of removals, not only on the (stable) keys. After some earlier scenes two spot
lights swapped slots, the fragment shader summed the lights in another order, and 1-3
pixels of an image came out 1 level apart (masks, depth and labels unchanged).
"""
import json
import os
import subprocess
import sys

import numpy as np
from conftest import ROOT, camera, scene

from simgen.geometry import look_at
from simgen.spec import LightSpec

OBJECTS = [("cube", [0.0, 0.0, 0.035], None, 1.0), ("sphere", [0.12, 0.06, 0.04], None, 1.0),
           ("duck", [0.06, -0.12, 0.0385], None, 1.0), ("cylinder", [-0.1, 0.08, 0.05], None, 1.0)]
EYES = [[0.8, 0.3, 1.5], [-0.6, 0.7, 1.2], [0.2, -0.9, 1.4], [-0.7, -0.5, 1.6]]


def _lights(kinds):
    return tuple(LightSpec(k, look_at(EYES[i % 4], [0, 0, 0]) @ np.diag([1, -1, -1, 1]),
                           np.array([1.0, 0.95 - 0.05 * i, 0.9], np.float32), 3.0 + 0.7 * i)
                 for i, k in enumerate(kinds))


def _slots(r):
    """The lights in the order pyrender's _bind_lighting gives them shader slots, per type."""
    order = [(type(n.light).__name__, round(float(n.light.intensity), 3)) for n in r._scene.light_nodes]
    return {kind: [i for k, i in order if k == kind] for kind, _ in order}


def test_light_slots_and_rgb_do_not_depend_on_earlier_scenes(renderer, library):
    """The same scene (2 point + 2 spot lights: keys that collide in pyrender's light sets)
    after different histories of light counts gets the same light slots and the same RGB."""
    views = [scene(OBJECTS, camera([0.45 * np.cos(k), 0.45 * np.sin(k), 0.42 + 0.02 * k], [0, 0, 0.03],
                                   640, 480, 60.0), lights=_lights(["point", "spot"] * 2)) for k in (1, 5, 8)]
    histories = [[], [["spot"] * 4, ["spot"]], [["point", "spot"] * 2] * 2, [["spot", "spot"]] * 2,
                 [["directional", "point", "spot"] * 4, ["spot"] * 3], [["spot", "point"] * 2, ["point"]]]
    seen_slots, seen_rgb = [], []
    for hist in histories:
        for kinds in hist:
            renderer.render(scene(OBJECTS[:2], views[0].camera, lights=_lights(kinds)), library, unoccluded=False)
        rgb = []
        for v in views:
            rgb.append(renderer.render(v, library, unoccluded=False).rgb)
            seen_slots.append(_slots(renderer))
        seen_rgb.append(rgb)
    bad = [f"light slots {s} after history {histories[k // len(views)]}, not {seen_slots[0]}"
           for k, s in enumerate(seen_slots) if s != seen_slots[0]]
    for h, rgb in enumerate(seen_rgb[1:], 1):
        for k, (a, b) in enumerate(zip(seen_rgb[0], rgb)):
            n = int((a != b).any(axis=-1).sum())
            if n:
                bad.append(f"view {k}: {n} pixels differ after history {histories[h]}")
    assert not bad, "\n".join(bad)


_MAKE = r"""
import json, sys
import numpy as np
from simgen.config import compose
from simgen.pipeline import Pipeline

order, out = json.loads(sys.argv[1]), sys.argv[2]
pipe = Pipeline(compose(json.loads(sys.argv[3])))
np.savez(out, **{str(i): pipe.make(i).frame.rgb for i in order})
pipe.close()
"""

# no physics (cheap), and 4 lights of the two types whose keys collide in pyrender's sets
CFG = ["physics.enabled=false", "lights.count=4", "lights.types=[point,spot]"]
N = 12


def test_pipeline_rgb_same_in_any_order_thread_count_and_load(tmp_path):
    """Images 0..N-1 made in order in one process (llvmpipe's default threads, as with
    workers=1) and in reverse in another (LP_NUM_THREADS=0, as a worker of workers=2 on 2
    cores), while two busy loops load every core: identical RGB, image by image."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYOPENGL_PLATFORM=os.environ.get("PYOPENGL_PLATFORM", "egl"))
    env.pop("LP_NUM_THREADS", None)
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        runs = {"forward": (list(range(N)), {}), "reverse": (list(range(N))[::-1], {"LP_NUM_THREADS": "0"})}
        procs = {name: subprocess.Popen([sys.executable, "-c", _MAKE, json.dumps(order),
                                         str(tmp_path / f"{name}.npz"), json.dumps(CFG)],
                                        env=dict(env, **extra), cwd=ROOT, stderr=subprocess.PIPE, text=True)
                 for name, (order, extra) in runs.items()}
        for name, p in procs.items():
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, f"{name}: {err[-2000:]}"
    finally:
        for p in load:
            p.kill()
            p.wait()
    a, b = np.load(tmp_path / "forward.npz"), np.load(tmp_path / "reverse.npz")
    diff = {i: int((a[str(i)] != b[str(i)]).any(axis=-1).sum()) for i in range(N)}
    assert not any(diff.values()), f"pixels differing per image: {diff}"
