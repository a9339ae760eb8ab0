"""One image end to end: sample -> settle -> render -> annotate -> write. The only place
where the stages are chained."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from .annotate import annotate
from .assets import AssetLibrary
from .scenes import sample_scene
from .spec import Annotation, Frame, SceneSpec, SettleReport

STAGES = ("sample", "physics", "render", "annotate", "write")


def image_name(index: int) -> str:
    return f"{index:06d}"


@dataclass(frozen=True)
class Sample:
    index: int
    name: str
    scene: SceneSpec  # after physics
    settle: SettleReport
    frame: Frame
    annotations: List[Annotation]
    timings: Dict[str, float]


class Pipeline:
    """Holds the per-process backends (physics client, GL context), created on first use."""

    def __init__(self, cfg, library: Optional[AssetLibrary] = None):
        self.cfg = cfg
        self.library = library or AssetLibrary.from_sets(list(cfg.objects.asset_sets))
        self._physics = None
        self._renderer = None

    @property
    def renderer(self):
        if self._renderer is None:
            from .render import PyrenderRenderer

            self._renderer = PyrenderRenderer(self.cfg.camera.width, self.cfg.camera.height,
                                              shadows=bool(self.cfg.render.shadows),
                                              shadow_map_size=int(self.cfg.render.shadow_map_size))
        return self._renderer

    @property
    def physics(self):
        if self._physics is None:
            from .physics import PhysicsWorld

            self._physics = PhysicsWorld()
        return self._physics

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        if self._physics is not None:
            self._physics.close()

    def settle(self, scene: SceneSpec):
        if not self.cfg.physics.enabled or not scene.objects:
            return scene, SettleReport(True, 0, 0.0, 0.0)
        return self.physics.settle(scene, self.library, self.cfg.physics)

    def make(self, index: int) -> Sample:
        t = {}
        t0 = time.perf_counter()
        scene = sample_scene(self.cfg, self.library, int(self.cfg.seed), index)
        t1 = time.perf_counter()
        scene, report = self.settle(scene)
        t2 = time.perf_counter()
        frame = self.renderer.render(scene, self.library)
        t3 = time.perf_counter()
        anns = annotate(scene, frame, int(self.cfg.annotate.min_visible_pixels))
        t4 = time.perf_counter()
        t.update(sample=t1 - t0, physics=t2 - t1, render=t3 - t2, annotate=t4 - t3)
        t.update({f"render.{k}": v for k, v in self.renderer.last_timings.items()})
        return Sample(index, image_name(index), scene, report, frame, anns, t)

    def write(self, sample: Sample, output_dir: str, parts_dir: str) -> dict:
        """Write buffers, then the image's part file last (its existence marks completion)."""
        from .io import atomic_write_json
        from .writers.buffers import write_buffers
        from .writers.coco import image_part

        t0 = time.perf_counter()
        files = write_buffers(output_dir, sample.name, sample.frame,
                              int(self.cfg.render.png_compression), bool(self.cfg.render.write_depth))
        part = image_part(sample, files)
        atomic_write_json(os.path.join(parts_dir, f"{sample.name}.json"), part)
        sample.timings["write"] = time.perf_counter() - t0
        return part
