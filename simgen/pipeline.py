"""One image end to end: sample -> settle -> render -> annotate -> write. The only place
where the stages are chained."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Dict, List, Optional

from .annotate import annotate
from .assets import AssetLibrary
from .config import FOLLOW_CAMERA
from .dataset import image_name, part_path
from .scenes import framed_size, labeled_sizes, objects_in_view, sample_camera, sample_scene, scene_of
from .seeds import factor_rng
from .spec import Annotation, Frame, SceneSpec, SettleReport

STAGES = ("sample", "physics", "render", "effects", "annotate", "write")


def split_of(cfg, index: int) -> str:
    """train / val / test for image ``index``: a pure function of (seed, scene of the image),
    so every format and every resumed or sharded run agrees, and the views of one scene never
    straddle train and val."""
    fr = [float(cfg.splits.train), float(cfg.splits.val), float(cfg.splits.test)]
    u = factor_rng(cfg.seed, scene_of(cfg, index), "split").random() * sum(fr)
    acc = 0.0
    for name, f in zip(("train", "val", "test"), fr):
        acc += f
        if u < acc:
            return name
    return "train" if fr[0] > 0 else ("val" if fr[1] > 0 else "test")


def _has_distractors(cfg) -> bool:
    c = cfg.distractors.count
    return not (isinstance(c, (int, float)) and c == 0)


@dataclass(frozen=True)
class Sample:
    index: int
    name: str
    scene: SceneSpec  # after physics
    settle: SettleReport
    frame: Frame
    annotations: List[Annotation]
    timings: Dict[str, float]
    conditions: Dict[str, Dict] = None  # edge cases applied: name -> sampled parameters
    split: str = "train"
    image_meta: Dict[str, object] = None  # extra image fields from effects (dist_coeffs)
    scene_index: Optional[int] = None  # the scene this image views, when scenes have several views


class Pipeline:
    """Holds the per-process backends (physics client, GL context), created on first use."""

    def __init__(self, cfg, library: Optional[AssetLibrary] = None):
        from .config import config_view

        self.cfg = cfg = config_view(cfg)  # plain and read-only: fast reads in the hot path
        self.library = library or AssetLibrary.from_config(cfg)
        unknown = sorted(set(cfg.objects.class_weights) - set(self.library.categories))
        if unknown:
            from .errors import ConfigError

            raise ConfigError(f"objects.class_weights names {', '.join(unknown)}, which no asset has; classes: "
                              f"{', '.join(self.library.categories)} (fix: spell a class as listed)")
        self.distractors = None
        self.all_assets = self.library  # objects + distractors: what physics and rendering see
        if _has_distractors(cfg):
            self.distractors = AssetLibrary.from_config(cfg, "distractors")
            shared = self.library.shared_shapes(self.distractors)
            if shared and not cfg.distractors.share_class_shapes:
                from .errors import ConfigError

                raise ConfigError(f"distractor asset(s) {', '.join(shared[:4])} are also labeled classes: a detector "
                                  f"would be punished for finding them unlabeled (fix: distractors.asset_sets=[clutter], "
                                  f"or distractors.share_class_shapes=true if that is what you want)")
            self.all_assets = self.library.merged(self.distractors)
        # category -> (keypoint names, skeleton); checked here, so a mismatch fails before any image
        self.keypoint_schema = self.library.keypoint_schema() if "keypoints" in cfg.annotate.labels else {}
        if cfg.yolo.pose and "yolo" in cfg.formats and not self.keypoint_schema:
            from .errors import ConfigError

            raise ConfigError("yolo.pose=true, but no class has keypoints (fix: assets with keypoints: a manifest's "
                              "keypoints:, or the built-in primitives; see docs/assets.md)")
        self._physics = None
        self._renderer = None
        self._settled = None  # (scene index, settled scene, report): reused by its other views

    @property
    def renderer(self):
        if self._renderer is None:
            import cv2

            from .render import shared_renderer

            # OpenCV's thread pool spins for a while after each parallel call (cvtColor,
            # resize): on cores llvmpipe and pybullet already fill, that is stolen time.
            cv2.setNumThreads(0)

            self._renderer = shared_renderer(self.cfg.camera.width, self.cfg.camera.height,
                                              shadows=bool(self.cfg.render.shadows),
                                              shadow_map_size=int(self.cfg.render.shadow_map_size),
                                              amodal_canvas=float(self.cfg.annotate.amodal_canvas),
                                              shadow_filter=str(self.cfg.render.shadow_filter))
        return self._renderer

    @property
    def physics(self):
        if self._physics is None:
            from .physics import PhysicsWorld

            self._physics = PhysicsWorld()
        return self._physics

    def model_bounds(self, asset: str):
        """(2,3) model-frame bounding box of ``asset``'s mesh, metres (the annotate labels' box3d)."""
        return self.all_assets.visual_mesh(asset).bounds

    def asset_keypoints(self, obj):
        """``obj``'s asset keypoints (AssetLibrary.keypoints), or (the class's names, None)
        when the asset has none but its class has, or None."""
        kp = self.library.keypoints(obj.asset)
        if kp is None and obj.category in self.keypoint_schema:
            return self.keypoint_schema[obj.category][0], None, ()
        return kp

    def close(self) -> None:
        """Release the physics client. The renderer is the process's shared one and stays."""
        self._renderer = None
        if self._physics is not None:
            self._physics.close()
            self._physics = None

    def sample(self, index: int, attempt: int = 0) -> SceneSpec:
        return sample_scene(self.cfg, self.library, int(self.cfg.seed), index, attempt,
                            distractor_library=self.distractors)

    def settle(self, scene: SceneSpec):
        cfg = self.cfg
        if not cfg.physics.enabled or not scene.objects or cfg.objects.placement in (*FOLLOW_CAMERA, "fixed"):
            return scene, SettleReport(True, 0, 0.0, 0.0)
        return self.physics.settle(scene, self.all_assets, cfg.physics)

    def sample_and_settle(self, index: int):
        """Sample and settle image ``index``'s scene, resampling (bounded by physics.max_tries)
        scenes that did not settle, sank, fell off their support or exploded; then make sure
        the camera sees at least camera.min_visible_objects objects (bounded by
        camera.max_tries). With camera.views_per_scene > 1 the settled scene is kept for the
        scene's next views, which only draw their own camera from (seed, image index)."""
        cfg = self.cfg
        self._t_sample = self._t_physics = 0.0
        views = int(cfg.camera.views_per_scene)
        key = scene_of(cfg, index)
        if self._settled is not None and self._settled[0] == key:
            scene, report = self._settled[1:]
        else:
            for attempt in range(int(cfg.physics.max_tries)):
                t0 = time.perf_counter()
                scene = self.sample(key, attempt)
                t1 = time.perf_counter()
                scene, report = self.settle(scene)
                self._t_sample += t1 - t0
                self._t_physics += time.perf_counter() - t1
                if report.valid:
                    break
            report = replace(report, attempts=attempt + 1)
            self._settled = (key, scene, report) if views > 1 else None
        need = int(cfg.camera.min_visible_objects)
        redraw = views > 1 or (need > 0 and cfg.objects.placement not in FOLLOW_CAMERA)  # a camera drawn again
        size = framed_size(cfg, self.all_assets, labeled_sizes(scene)) if redraw else None
        if views > 1:  # this view's own camera (with one view, the scene's camera is the image's)
            scene = replace(scene, camera=sample_camera(cfg, factor_rng(cfg.seed, index, "camera", scene.attempt),
                                                        size))
        if need > 0 and cfg.objects.placement not in FOLLOW_CAMERA:
            for t in range(1, int(cfg.camera.max_tries) + 1):
                if objects_in_view(scene.camera, scene.objects) >= need:
                    break
                cam = sample_camera(cfg, factor_rng(cfg.seed, index, "camera", scene.attempt, t), size)
                scene = replace(scene, camera=cam)
        return scene, report

    def make(self, index: int) -> Sample:
        from . import effects

        t = {}
        scene, report = self.sample_and_settle(index)
        fired = effects.sample(self.cfg, int(self.cfg.seed), index)
        scene = effects.apply_scene(fired, scene, self)
        t2 = time.perf_counter()
        renderer = self.renderer
        renderer.shadows, renderer.amodal_canvas = bool(self.cfg.render.shadows), float(self.cfg.annotate.amodal_canvas)
        renderer.set_shadow_map_size(int(self.cfg.render.shadow_map_size))
        renderer.set_shadow_filter(str(self.cfg.render.shadow_filter))
        frame = renderer.render(scene, self.all_assets, normals=bool(self.cfg.render.write_normals))
        t3 = time.perf_counter()
        frame, meta = effects.apply_image(fired, frame, scene)
        t3e = time.perf_counter()
        bounds = ({o.asset: self.model_bounds(o.asset) for o in scene.objects if o.labeled}
                  if self.cfg.annotate.labels else None)
        kps = {o.asset: self.asset_keypoints(o) for o in scene.objects if o.labeled} if self.keypoint_schema else None
        anns = annotate(scene, frame, self.cfg.annotate, bounds, (meta or {}).get("dist_coeffs"), kps)
        t4 = time.perf_counter()
        t.update(sample=self._t_sample, physics=self._t_physics, render=t3 - t2, effects=t3e - t3,
                 annotate=t4 - t3e)
        t.update({f"render.{k}": v for k, v in self.renderer.last_timings.items()})
        return Sample(index, image_name(index), scene, report, frame, anns, t,
                      conditions=effects.as_metadata(fired), image_meta=meta,
                      split=split_of(self.cfg, index),
                      scene_index=scene.index if int(self.cfg.camera.views_per_scene) > 1 else None)

    def encode(self, sample: Sample):
        """The image's files as {relative path: bytes} and its part record (JSON-ready)."""
        from .writers.buffers import encode_buffers, file_roles
        from .writers.coco import image_part

        t0 = time.perf_counter()
        files = encode_buffers(sample.name, sample.frame, int(self.cfg.render.png_compression),
                               bool(self.cfg.render.write_depth))
        part = image_part(sample, file_roles(files))
        sample.timings["write"] = time.perf_counter() - t0
        return files, part

    def write(self, sample: Sample, output_dir: str, parts_dir: str) -> dict:
        """Encode and commit one image into output_dir; returns its part record."""
        t0 = time.perf_counter()
        files, part = self.encode(sample)
        commit_image(output_dir, parts_dir, sample.index, files, part)
        sample.timings["write"] = time.perf_counter() - t0
        return part


def commit_image(output_dir: str, parts_dir: str, index: int, files: Dict[str, bytes], part: dict) -> None:
    """Write an image's files atomically, then its part file last: the part's existence marks
    the image complete, so a run killed at any moment leaves only whole images behind.
    Filesystem failures (full disk, permissions) become one OutputError naming the fix."""
    from .errors import OutputError
    from .io import atomic_write_bytes, atomic_write_json, os_error_reason

    try:
        for rel, data in files.items():
            atomic_write_bytes(os.path.join(output_dir, rel), data)
        atomic_write_json(part_path(parts_dir, index), part)
    except OSError as exc:
        raise OutputError(f"cannot write image {image_name(index)} into '{output_dir}': {os_error_reason(exc)}; "
                          f"finished images are kept (fix: free space or fix permissions, then run the same "
                          f"command again to resume)") from None
