"""BOP-style 6D pose export: ``bop/models/obj_XXXXXX.ply`` (millimetres) with
``models_info.json``, and per split scene folders ``bop/<split>/000000/``, ``000001/`` ...
(images with index // SCENE_SIZE = 0, 1, ..., as BOP's PBR training data) with ``rgb/``, ``depth/``
(millimetres, depth_scale 1.0), ``mask/`` (the object alone, within the frame),
``mask_visib/``, ``scene_camera.json``, ``scene_gt.json`` and ``scene_gt_info.json``.
One object id per asset. BOP models are rigid and fixed, so every object must have scale 1
(``objects.scale=1``); otherwise the export stops and says so."""
from __future__ import annotations

import json
import os

import numpy as np

from . import register
from .common import Exporter, link_or_copy, read_mask, split_of

SCENE_SIZE = 1000  # image indices per scene folder: a scene's ground truth is held in memory


def _models(dataset: str, assets, tmp: str) -> dict:
    import yaml

    from ..assets import AssetLibrary
    from ..errors import SimGenError

    cfg = yaml.safe_load(open(os.path.join(dataset, "config.yaml"))) if os.path.isfile(
        os.path.join(dataset, "config.yaml")) else {}
    sets = (cfg.get("objects") or {}).get("asset_sets") or ["primitives", "pybullet"]
    try:
        lib = AssetLibrary.from_sets(sets)
    except SimGenError as exc:
        raise SimGenError(f"BOP export needs the dataset's assets to write its models: {exc}") from None
    os.makedirs(os.path.join(tmp, "models"))
    info = {}
    for obj_id, name in enumerate(assets, start=1):
        mesh = lib.visual_mesh(name).copy()
        mesh.apply_scale(1000.0)  # metres -> millimetres
        mesh.export(os.path.join(tmp, "models", f"obj_{obj_id:06d}.ply"))
        lo, hi = mesh.bounds
        info[str(obj_id)] = {"diameter": float(np.max(np.linalg.norm(
            mesh.convex_hull.vertices[:, None] - mesh.convex_hull.vertices[None], axis=2))),
            "min_x": float(lo[0]), "min_y": float(lo[1]), "min_z": float(lo[2]),
            "size_x": float(hi[0] - lo[0]), "size_y": float(hi[1] - lo[1]), "size_z": float(hi[2] - lo[2]),
            "asset": name}
    with open(os.path.join(tmp, "models", "models_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    return {name: k for k, name in enumerate(assets, start=1)}


def _write_scene(sdir: str, cam: dict, gt: dict, gt_info: dict) -> None:
    for fname, data in (("scene_camera.json", cam), ("scene_gt.json", gt), ("scene_gt_info.json", gt_info)):
        with open(os.path.join(sdir, fname), "w") as f:
            json.dump(data, f)


@register("bop")
class Bop(Exporter):
    folder = "bop"

    def begin(self, coco) -> None:
        from ..errors import SimGenError

        scaled, assets = 0, set()
        for _, anns in coco:  # a first pass: check scales, collect the models
            scaled += sum(not np.allclose(a.get("scale", [1, 1, 1]), 1.0) for a in anns)
            assets.update(a["asset"] for a in anns)
        if scaled:
            raise SimGenError(f"BOP export: {scaled} objects have a scale other than 1, and BOP models are "
                              f"fixed (fix: generate with objects.scale=1, or export yolo/voc instead)")
        super().begin(coco)
        self.obj_ids = _models(self.dataset, sorted(assets), self.tmp)
        self._open = {}  # split -> [scene folder, cameras, gt, gt_info] of the folder being filled

    def image(self, img: dict, anns: list):
        import cv2

        from ..annotate import decode_rle

        split = split_of(img)
        sdir = os.path.join(self.tmp, split, f"{img['index'] // SCENE_SIZE:06d}")
        for sub in ("rgb", "depth", "mask", "mask_visib"):
            os.makedirs(os.path.join(sdir, sub), exist_ok=True)
        im = int(img["index"])
        link_or_copy(os.path.join(self.dataset, "images", img["file_name"]), os.path.join(sdir, "rgb", f"{im:06d}.png"))
        if img.get("depth_file"):
            link_or_copy(os.path.join(self.dataset, img["depth_file"]), os.path.join(sdir, "depth", f"{im:06d}.png"))
        c2w = np.asarray(img["cam_pose"])
        w2c = np.linalg.inv(c2w)
        cam = {"cam_K": np.asarray(img["K"]).ravel().tolist(), "depth_scale": 1.0,
               "cam_R_w2c": w2c[:3, :3].ravel().tolist(), "cam_t_w2c": (w2c[:3, 3] * 1000).tolist()}
        inst = read_mask(self.dataset, img)
        gt, gt_info = [], []
        for k, a in enumerate(anns):
            gt.append({"cam_R_m2c": np.asarray(a["pose"]["R_m2c"]).ravel().tolist(),
                       "cam_t_m2c": (np.asarray(a["pose"]["t_m2c"]) * 1000).tolist(),
                       "obj_id": self.obj_ids[a["asset"]]})
            gt_info.append({"bbox_obj": a.get("amodal_bbox", a["bbox"]), "bbox_visib": a["bbox"],
                            "px_count_all": a.get("unoccluded_area", a["area"]),
                            "px_count_valid": a.get("unoccluded_area", a["area"]),
                            "px_count_visib": a["area"], "visib_fract": a.get("visibility", 1.0)})
            full = decode_rle(a["amodal_segmentation"]) if a.get("amodal_segmentation") else inst == a["instance_id"]
            name = f"{im:06d}_{k:06d}.png"
            cv2.imwrite(os.path.join(sdir, "mask", name), full.astype(np.uint8) * 255)
            cv2.imwrite(os.path.join(sdir, "mask_visib", name), (inst == a["instance_id"]).astype(np.uint8) * 255)
        return split, sdir, str(im), cam, gt, gt_info

    def collect(self, summary) -> None:
        split, sdir, im, cam, gt, gt_info = summary
        scene = self._open.get(split)
        if scene is None or scene[0] != sdir:
            if scene is not None:  # images come in index order: that scene is complete
                _write_scene(*scene)
            scene = self._open[split] = [sdir, {}, {}, {}]
        scene[1][im], scene[2][im], scene[3][im] = cam, gt, gt_info

    def end(self) -> str:
        for scene in self._open.values():
            _write_scene(*scene)
        return super().end()
